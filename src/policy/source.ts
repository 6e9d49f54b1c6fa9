// Where policies come from: watched files and folders in host mode, FirewallPolicy objects from the API server in
// Kubernetes mode. A source hands manifests to a sink (the policy store) and says when a batch of changes is complete.
import type { PolicyDiagnostic } from './types.js';

export interface PolicySink {
  /**
   * One transaction: each source id (a file, an API object) maps to its new manifests (YAML or JSON, one or more
   * documents), or null when it is gone; the resulting set replaces the current one at once (PolicyStore.applyFiles).
   * A source id with any error keeps its previous objects. Returns the diagnostics per source id still present.
   */
  apply(changes: ReadonlyMap<string, string | null>): Map<string, PolicyDiagnostic[]>;
  /** A batch of changes is complete: enforce the accepted set now (an object moving between files is never withdrawn midway). */
  commit(): void;
}

export interface PolicySource {
  start(sink: PolicySink): Promise<void>;
  stop(): Promise<void>;
}
