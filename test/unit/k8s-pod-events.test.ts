// Pods that cannot be enforced become Warning Events on the pod: once per problem, again when it comes back.
import { describe, test } from 'vitest';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { CoreV1Event } from '@kubernetes/client-node';
import { PodEventRecorder, podProblemEvent, type PodProblem } from '../../src/k8s/pod-events.js';

const pod = { namespace: 'obot-mcp', name: 'ms1abc-7d9', uid: 'u1' };
const noCgroup: PodProblem = { key: 'obot-mcp/ms1abc-7d9', error: 'cgroup /x cannot be enrolled: ENOENT', enforced: 'none' };

describe('Events for pods not enforced', () => {
  test('the Event names the pod, the reason and the problem', () => {
    const now = new Date('2026-12-01T06:00:00Z');
    const event = podProblemEvent(pod, noCgroup, 'node-1', now);
    assert.deepEqual(event.involvedObject, { apiVersion: 'v1', kind: 'Pod', namespace: 'obot-mcp', name: 'ms1abc-7d9', uid: 'u1' });
    assert.equal(event.type, 'Warning');
    assert.equal(event.reason, 'EgressNotEnforced');
    assert.equal(event.message, 'egress NOT enforced for this pod: cgroup /x cannot be enrolled: ENOENT');
    assert.equal(podProblemEvent(pod, { ...noCgroup, enforced: 'deny-all' }, 'node-1', now).reason, 'EgressFailClosed');
    assert.equal(podProblemEvent(pod, { ...noCgroup, error: 'x'.repeat(5000) }, 'node-1', now).message?.length, 1024);
  });

  test('one Event per distinct problem; a solved problem that returns is reported again; a failed write is retried', async () => {
    const written: CoreV1Event[] = [];
    let fail = false;
    const client = {
      create: async <T>(path: string, body: T) => {
        if (fail) throw Object.assign(new Error('Forbidden'), { code: 403 });
        assert.equal(path, '/api/v1/namespaces/obot-mcp/events');
        written.push(body as CoreV1Event);
        return body;
      },
    };
    const recorder = new PodEventRecorder(client, 'node-1', pino({ level: 'silent' }));
    const podOf = () => pod;
    recorder.update([noCgroup], podOf);
    recorder.update([noCgroup], podOf);
    assert.equal(written.length, 1);
    recorder.update([{ ...noCgroup, enforced: 'deny-all', error: 'no veth' }], podOf);
    assert.equal(written.length, 2);
    recorder.update([], podOf);
    recorder.update([noCgroup], podOf);
    assert.equal(written.length, 3);
    recorder.update([], podOf);
    fail = true;
    recorder.update([noCgroup], podOf);
    await new Promise((resolve) => setImmediate(resolve));
    fail = false;
    recorder.update([noCgroup], podOf);
    assert.equal(written.length, 4);
    recorder.update([noCgroup], () => null);
    assert.equal(written.length, 4);
  });
});
