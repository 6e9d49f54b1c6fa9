// Preloaded into the agent by the DNS benchmark (node --import) when BENCH_AGENT_PROFILE is set: SIGUSR2 starts the
// V8 CPU profiler, the next SIGUSR2 writes the profile to $BENCH_AGENT_PROFILE/agent-<pid>-<n>.cpuprofile (open it in
// Chrome DevTools). Not --cpu-prof: its sampling signals abort the kernel verifier (EAGAIN) while the agent loads.
// Worker threads (the DNS proxy's) get no signals: each profiles from its start and writes
// agent-<pid>-worker<thread>-<n>.cpuprofile every WORKER_PROFILE_MS.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { isMainThread, threadId } from 'node:worker_threads';

const WORKER_PROFILE_MS = 4000;
const dir = process.env.BENCH_AGENT_PROFILE;
if (dir !== undefined && !isMainThread) {
  const session = new Session();
  session.connect();
  let written = 0;
  session.post('Profiler.enable', () => session.post('Profiler.start'));
  setInterval(() => {
    session.post('Profiler.stop', (error, result) => {
      if (error === null)
        writeFileSync(join(dir, `agent-${process.pid}-worker${threadId}-${written++}.cpuprofile`), JSON.stringify(result.profile));
      session.post('Profiler.start');
    });
  }, WORKER_PROFILE_MS).unref();
} else if (dir !== undefined) {
  const session = new Session();
  session.connect();
  let running = false;
  let written = 0;
  process.on('SIGUSR2', () => {
    if (!running) {
      session.post('Profiler.enable', () => session.post('Profiler.start'));
      running = true;
      return;
    }
    running = false;
    session.post('Profiler.stop', (error, result) => {
      if (error === null) writeFileSync(join(dir, `agent-${process.pid}-${written++}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
