// The parts of a sink. A sink type pairs a pure format (what a record looks like) with a transport (how a batch of
// records leaves the agent); one Delivery between them owns queueing, batching, retry, timeouts and counted drops,
// so neither a format nor a transport ever decides what is lost.
import type { PipelineNotice } from '../events/sink.js';
import type { FlowEvent } from '../events/types.js';
import type { DeliveryOptions } from './delivery.js';
import type { SpoolOptions } from './spool.js';

/** Renders one record as one string, without framing (the transport frames: a newline, an octet count, ...). */
export interface Format {
  flow(event: FlowEvent): string;
  notice(notice: PipelineNotice): string;
}

/** Thrown by a transport when the destination refused the records for good (HTTP 4xx but 429): not retried. */
export class PermanentDeliveryError extends Error {
  override readonly name = 'PermanentDeliveryError';
}

/** Sends a batch, in order. Throwing (or rejecting) means "not delivered": the delivery retries the whole batch. */
export interface Transport {
  send(batch: readonly string[]): Promise<void>;
  /** Release the destination; called once, after the last send. */
  close(): Promise<void>;
}

/** What a sink may report to the operator (the agent's logger fits). */
export interface SinkLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface SinkDeps {
  /** Node name carried by the sink's own notices. */
  node: string;
  log: SinkLog;
}

/** One entry of the registry: the config schema of a sink type and how to build it from a validated config. */
export interface SinkDefinition<Config extends { type: string }> {
  /**
   * JSON schema (ajv) of one `events.sinks[]` entry of this type, `type` included; it is checked as part of the
   * configuration file, so errors name the field (`events.sinks[1].path: ...`).
   */
  schema: Record<string, unknown>;
  /** Where the records go, for the operator's log (a path, a URL). */
  destination(config: Config): string;
  create(config: Config, deps: SinkDeps): { format: Format; transport: Transport; delivery?: DeliveryOptions; spool?: SpoolOptions };
}
