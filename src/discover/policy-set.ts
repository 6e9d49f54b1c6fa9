// Loading a proposed policy set for suggest, diff, replay and explain: the same validation as `policy lint` and the
// agent (one PolicyStore over every file), refusing a set with errors (the agent would reject those files too).
import { readFileSync } from 'node:fs';
import { manifestFilesIn } from '../policy/manifest-files.js';
import { formatDiagnostic } from '../policy/diagnostics.js';
import { PolicyStore } from '../policy/store.js';
import type { ValidatedPolicy } from '../policy/validate.js';

export interface PolicySet {
  policies: ValidatedPolicy[];
  /** Warnings (accepted, partly not enforced), one line each. */
  warnings: string[];
}

/** Every FirewallPolicy in `paths` (files or folders); throws listing every error when any file is invalid. */
export function loadPolicySet(paths: readonly string[], defaultNamespace = 'default'): PolicySet {
  const store = new PolicyStore({ defaultNamespace });
  const errors: string[] = [];
  const warnings: string[] = [];
  for (const path of paths) {
    let files: string[];
    try {
      files = manifestFilesIn(path);
    } catch (error) {
      errors.push(`${path}: cannot read: ${(error as Error).message}`);
      continue;
    }
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        errors.push(`${file}: cannot read: ${(error as Error).message}`);
        continue;
      }
      for (const diagnostic of store.applyFile(file, text))
        (diagnostic.severity === 'error' ? errors : warnings).push(formatDiagnostic(diagnostic));
    }
  }
  if (errors.length > 0) throw new Error(`the policy set has errors (egressguard policy lint shows the same):\n  ${errors.join('\n  ')}`);
  return { policies: store.policies(), warnings };
}
