// The sink registry: sink type → config schema and factory. Adding a sink type is one file (its config, schema and
// factory, see jsonl.ts) plus one line in SINK_TYPES.
import { Delivery } from './delivery.js';
import { fileSink } from './file.js';
import { splunkHecSink, webhookSink } from './http.js';
import { jsonlSink } from './jsonl.js';
import { filterPredicate, type SinkFilter } from './options.js';
import { DeliveredSink } from './sink.js';
import { Spool } from './spool.js';
import { stdoutSink } from './stdout.js';
import { syslogSink } from './syslog.js';
import type { SinkDefinition, SinkDeps } from './types.js';

const SINK_TYPES = {
  jsonl: jsonlSink,
  stdout: stdoutSink,
  file: fileSink,
  syslog: syslogSink,
  'splunk-hec': splunkHecSink,
  webhook: webhookSink,
} as const;

export type SinkType = keyof typeof SINK_TYPES;
type ConfigOf<Definition> = Definition extends SinkDefinition<infer Config> ? Config : never;
/** One validated `events.sinks[]` entry, of any registered type. */
export type SinkConfig = { [Type in SinkType]: ConfigOf<(typeof SINK_TYPES)[Type]> }[SinkType];

export { DeliveredSink } from './sink.js';
export type { DeliveryStats } from './delivery.js';
export type { SinkDeps, SinkLog } from './types.js';

/**
 * JSON schema of one `events.sinks[]` entry: `type` must name a registered sink type, and the entry must then
 * match that type's schema. The configuration module embeds it; ajv reports a failed `then` with an extra
 * `if` error, which adds nothing to the field-level errors and can be left out.
 */
export function sinkConfigSchema(): Record<string, unknown> {
  return {
    type: 'object',
    required: ['type'],
    properties: { type: { enum: Object.keys(SINK_TYPES) } },
    allOf: Object.entries(SINK_TYPES).map(([type, definition]) => ({
      if: { type: 'object', required: ['type'], properties: { type: { const: type } } },
      then: definition.schema,
    })),
  };
}

function definitionOf(type: string): SinkDefinition<SinkConfig> {
  const definition = (SINK_TYPES as Record<string, SinkDefinition<SinkConfig>>)[type];
  if (definition === undefined) throw new Error(`unknown sink type "${type}"; known: ${Object.keys(SINK_TYPES).join(', ')}`);
  return definition;
}

/** Build the configured sinks, in order, each named after its config entry (`events.sinks[0]`). */
export function createSinks(configs: readonly SinkConfig[], deps: SinkDeps): DeliveredSink[] {
  return configs.map((config, index) => {
    const name = `events.sinks[${index}]`;
    const definition = definitionOf(config.type);
    const described = `${name} (${config.type} to ${definition.destination(config)})`;
    try {
      const { format, transport, delivery, spool } = definition.create(config, deps);
      const filter = filterPredicate((config as { filter?: SinkFilter }).filter);
      const delivered = new Delivery(described, transport, deps.log, delivery, spool ? new Spool(spool) : null);
      return new DeliveredSink(name, format, delivered, deps.node, filter);
    } catch (error) {
      throw new Error(`${described}: ${(error as Error).message}`, { cause: error });
    }
  });
}

/** The delivery counters of every sink, flat for the agent's status: `events.sinks[0].delivered`, ... */
export function sinkStats(sinks: readonly DeliveredSink[]): Record<string, number> {
  return Object.fromEntries(
    sinks.flatMap((sink) => Object.entries(sink.stats()).map(([counter, value]) => [`${sink.name}.${counter}`, value])),
  );
}
