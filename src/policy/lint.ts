// `egressguard policy lint FILE…`: validate manifests for CI, with one-line messages that name file, object, field and fix.
import { readFileSync } from 'node:fs';
import { capacityDiagnostics } from './capacity-lint.js';
import { manifestFilesIn } from './manifest-files.js';
import { PolicyStore } from './store.js';
import type { PolicyDiagnostic } from './types.js';
import type { ValidationOptions } from './validate.js';

// The CLI and the agent import formatDiagnostic from here together with lintFiles.
export { formatDiagnostic } from './diagnostics.js';

export interface LintResult {
  diagnostics: PolicyDiagnostic[];
  /** No errors (warnings allowed). */
  ok: boolean;
}

/** Validates every file as one policy set (so an object defined in two files is reported too), then checks the set against the kernel's capacities. */
export function lintFiles(paths: readonly string[], options: ValidationOptions = {}): LintResult {
  const store = new PolicyStore(options);
  const diagnostics: PolicyDiagnostic[] = [];
  for (const path of paths) {
    let files: string[];
    try {
      files = manifestFilesIn(path);
    } catch (error) {
      diagnostics.push(unreadable(path, error));
      continue;
    }
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        diagnostics.push(unreadable(file, error));
        continue;
      }
      diagnostics.push(...store.applyFile(file, text));
    }
  }
  diagnostics.push(...capacityDiagnostics(store.objects().flatMap((o) => (o.kind === 'FirewallPolicy' ? [o] : []))));
  return { diagnostics, ok: !diagnostics.some((d) => d.severity === 'error') };
}

function unreadable(path: string, error: unknown): PolicyDiagnostic {
  const reason = error instanceof Error ? error.message : String(error);
  return { severity: 'error', location: { file: path }, message: `cannot read: ${reason}`, fix: 'check the path and its permissions' };
}
