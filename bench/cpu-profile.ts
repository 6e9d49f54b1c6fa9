// Preloaded into the agent by the DNS benchmark (node --import) when BENCH_AGENT_PROFILE is set: SIGUSR2 starts the
// V8 CPU profiler, the next SIGUSR2 writes the profile to $BENCH_AGENT_PROFILE/agent-<pid>-<n>.cpuprofile (open it in
// Chrome DevTools). Not --cpu-prof: its sampling signals abort the kernel verifier (EAGAIN) while the agent loads.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_AGENT_PROFILE;
if (dir !== undefined) {
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
