// Where policies come from: watched files and folders in host mode, FirewallPolicy objects from the API server in
// Kubernetes mode. A source hands manifests to a sink (the policy store) and says when a batch of changes is complete.
import type { PolicyDiagnostic } from './types.js';

export interface PolicySink {
  /**
   * Replace what `sourceId` (a file, an API object) defined with `manifests` (YAML or JSON, one or more documents).
   * With any error the previous objects of `sourceId` stay in force. Returns every diagnostic.
   */
  apply(sourceId: string, manifests: string): PolicyDiagnostic[];
  /** Withdraw everything `sourceId` defined. */
  remove(sourceId: string): void;
  /** A batch of changes is complete: enforce the accepted set now (an object moving between files is never withdrawn midway). */
  commit(): void;
}

export interface PolicySource {
  start(sink: PolicySink): Promise<void>;
  stop(): Promise<void>;
}
