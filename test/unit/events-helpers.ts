// Builders shared by the events tests.
import type { PipelineNotice, Sink } from '../../src/events/sink.js';
import type { FlowEvent } from '../../src/events/types.js';

export function flowEvent(overrides: Partial<FlowEvent> = {}): FlowEvent {
  return {
    time: '2025-01-02T03:04:05.678Z',
    node: 'node-1',
    workload: { namespace: 'obot-mcp', name: 'rogue', labels: { app: 'pt5rfqaz' }, podIps: ['198.18.11.2'], cgroupId: '42' },
    destination: { ip: '198.18.100.20', port: 443, protocol: 'tcp', family: 4 },
    fqdn: 'httpbin.org',
    fqdnSource: 'dns',
    layer: 'connect',
    verdict: 'denied',
    tier: 2,
    policy: { namespace: 'obot-mcp', name: 'rogue-policy', generation: 1 },
    rule: 'deny-all',
    count: 1,
    eventId: '',
    ...overrides,
  };
}

/** A sink that keeps what it is given. */
export class MemorySink implements Sink {
  readonly events: FlowEvent[] = [];
  readonly notices: PipelineNotice[] = [];
  closed = false;
  write(event: FlowEvent): void {
    this.events.push(event);
  }
  notice(notice: PipelineNotice): void {
    this.notices.push(notice);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A clock the test moves by hand. */
export function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let current = 1000;
  return { now: () => current, advance: (ms) => (current += ms) };
}
