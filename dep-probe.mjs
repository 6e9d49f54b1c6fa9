// Investigation only (not committed): SIGTERM a Kubernetes-mode agent and show what it printed.
import { KubeNode } from './dist/test/support/kube/node.js';
const node = await KubeNode.start({ prefix: `egdp${Math.floor(Math.random() * 1e4)}`, stalePattern: /^egdp/, kubelet: { nodeName: 'dep-node', driver: 'systemd' } });
try {
  const agent = await node.agent({ nodeArgs: process.argv.slice(2) });
  await agent.start(60_000);
  await agent.waitFor('the first pod list', (s) => s.kubernetes?.pods.api.synced === true, 60_000);
  await new Promise((r) => setTimeout(r, 2000));
  await agent.stop('SIGTERM');
  const log = agent.log();
  console.log(log.split('\n').filter((l) => !l.startsWith('{') || /warn|error|stop|DEP/i.test(l)).join('\n'));
} finally {
  await node.destroy();
}
