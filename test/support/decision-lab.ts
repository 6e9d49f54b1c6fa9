// The scripted scenario the metrics, observe and flood tests share: one FirewallPolicy that permits httpbin.org on
// TCP 8443 (by address) and denies everything else, both logged, for pods labelled app=obs (decisionPolicyFor: the same
// for another host).
import { DEFAULT_LAB_HOSTS } from '../../lab/lab.js';

export const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
export const ATTACKER = DEFAULT_LAB_HOSTS.find((h) => h.name === 'attacker.example')!;
export const POLICY_NAME = 'obs-fw';
export const POLICY_NAMESPACE = 'obs';

/**
 * The policy permitting TCP 8443 to `host` (by address) and denying everything else, both logged; its smart group
 * and rule are named after the host's first label (httpbin.org: `httpbin`, `allow-httpbin`).
 */
export function decisionPolicyFor(host: { name: string; ipv4: string; ipv6: string }): string {
  const label = host.name.split('.')[0]!;
  return `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: ${POLICY_NAME}
  namespace: ${POLICY_NAMESPACE}
spec:
  smartGroups:
    - name: ${label}
      selectors:
        - cidr: ${host.ipv4}/32
        - cidr: ${host.ipv6}/128
    - name: anywhere
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0
  rules:
    - name: allow-${label}
      action: permit
      protocol: tcp
      port: 8443
      selector: { matchLabels: { app: obs } }
      destinationSmartGroups: [{ name: ${label} }]
      logging: true
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: obs } }
      destinationSmartGroups: [{ name: anywhere }]
      logging: true
`;
}

export const decisionPolicy = decisionPolicyFor(HTTPBIN);
