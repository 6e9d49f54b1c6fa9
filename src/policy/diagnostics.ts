// The one-line human form of a policy diagnostic, shared by `policy lint`, the agent log and status.
import type { PolicyDiagnostic } from './types.js';

/** One line: `file:line doc N namespace/name: severity: field message — fix`. */
export function formatDiagnostic(d: PolicyDiagnostic): string {
  const { file, line, document, namespace, name, field } = d.location;
  const where: string[] = [];
  if (file !== undefined) where.push(line !== undefined ? `${file}:${line}` : file);
  else if (line !== undefined) where.push(`line ${line}`);
  if (document !== undefined) where.push(`doc ${document}`);
  if (name !== undefined) where.push(namespace !== undefined ? `${namespace}/${name}` : name);
  const subject = field !== undefined ? `${field} ${d.message}` : d.message;
  const text = `${d.severity}: ${subject}${d.fix !== undefined ? ` — fix: ${d.fix}` : ''}`;
  return where.length > 0 ? `${where.join(' ')}: ${text}` : text;
}
