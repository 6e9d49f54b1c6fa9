// The scripted scenario the metrics, observe and flood tests share: one FirewallPolicy that permits httpbin.org on
// TCP 8443 (by address) and denies everything else, both logged, for pods labelled app=obs.
import { DEFAULT_LAB_HOSTS } from '../../lab/lab.js';

export const HTTPBIN = DEFAULT_LAB_HOSTS.find((h) => h.name === 'httpbin.org')!;
export const ATTACKER = DEFAULT_LAB_HOSTS.find((h) => h.name === 'attacker.example')!;
export const POLICY_NAME = 'obs-fw';
export const POLICY_NAMESPACE = 'obs';

export const decisionPolicy = `apiVersion: networking.aviatrix.com/v1alpha1
kind: FirewallPolicy
metadata:
  name: ${POLICY_NAME}
  namespace: ${POLICY_NAMESPACE}
spec:
  smartGroups:
    - name: httpbin
      selectors:
        - cidr: ${HTTPBIN.ipv4}/32
        - cidr: ${HTTPBIN.ipv6}/128
    - name: anywhere
      selectors:
        - cidr: 0.0.0.0/0
        - cidr: ::/0
  rules:
    - name: allow-httpbin
      action: permit
      protocol: tcp
      port: 8443
      selector: { matchLabels: { app: obs } }
      destinationSmartGroups: [{ name: httpbin }]
      logging: true
    - name: deny-all
      action: deny
      protocol: any
      selector: { matchLabels: { app: obs } }
      destinationSmartGroups: [{ name: anywhere }]
      logging: true
`;
