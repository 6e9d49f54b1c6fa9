// The last listed policies and baseline, kept beside the pod state file so that an agent restarted while the API
// server is unreachable enforces the node's pods with their real policies at once, instead of holding them (their DNS
// refused) until the cluster can be listed. Written only from what the API server listed; replaced atomically (a
// temporary file, fsync, rename); versioned and SHA-256-checked, so a torn, edited or older-format copy is rejected
// (and named in the log) and the agent falls back to waiting for the API server.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { DetectedInfrastructure, EgressBaselineSpec } from './baseline.js';
import type { PolicyKind } from './policy-source.js';

export const KEPT_POLICIES_FORMAT = 'egressguard.io/kept-policies';
export const KEPT_POLICIES_VERSION = 1;
const FILE_NAME = 'kubernetes-policies.json';

/** One accepted object as the store received it (Service selectors already resolved). */
export interface KeptPolicy {
  kind: PolicyKind;
  generation: number;
  /** The manifest handed to the store (apiVersion, kind, metadata name/namespace/labels, spec). */
  manifest: Record<string, unknown>;
  /** The Services its rules name (a change to one re-applies it once the API server is back). */
  services: string[];
}

export interface KeptPolicySet {
  /** The last valid EgressBaseline's spec (null: none was ever valid) and the infrastructure detected with it. */
  baseline: { spec: EgressBaselineSpec | null; detected: DetectedInfrastructure };
  policies: KeptPolicy[];
}

export interface KeptCopy {
  writtenAt: string;
  set: KeptPolicySet;
}

interface KeptFile {
  format: string;
  version: number;
  writtenAt: string;
  /** SHA-256 (hex) of `payload`, the set's JSON text. */
  sha256: string;
  payload: string;
}

/** Where the copy lives: beside the pod state file (a tmpfs such as /run: gone at reboot, with every pod). */
export function keptPoliciesPath(podStateFile: string): string {
  return join(dirname(podStateFile), FILE_NAME);
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Replaces the copy atomically: a reader sees the old file or the new one, never part of either. */
export function writeKeptPolicies(path: string, set: KeptPolicySet, now = new Date()): void {
  const payload = JSON.stringify(set);
  const file: KeptFile = {
    format: KEPT_POLICIES_FORMAT,
    version: KEPT_POLICIES_VERSION,
    writtenAt: now.toISOString(),
    sha256: digest(payload),
    payload,
  };
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(file));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
}

/** The copy, null when there is none, or why it cannot be used. */
export function readKeptPolicies(path: string): { ok: true; copy: KeptCopy } | { ok: false; reason: string } | null {
  if (!existsSync(path)) return null;
  let file: Partial<KeptFile>;
  try {
    file = JSON.parse(readFileSync(path, 'utf8')) as Partial<KeptFile>;
  } catch (error) {
    return { ok: false, reason: `not JSON (${(error as Error).message})` };
  }
  if (file?.format !== KEPT_POLICIES_FORMAT) return { ok: false, reason: `not a ${KEPT_POLICIES_FORMAT} file` };
  if (file.version !== KEPT_POLICIES_VERSION)
    return { ok: false, reason: `format version ${String(file.version)}, this agent reads version ${KEPT_POLICIES_VERSION}` };
  if (typeof file.payload !== 'string' || typeof file.writtenAt !== 'string') return { ok: false, reason: 'payload or writtenAt missing' };
  if (file.sha256 !== digest(file.payload)) return { ok: false, reason: 'SHA-256 mismatch: the copy was altered or torn' };
  let set: KeptPolicySet;
  try {
    set = JSON.parse(file.payload) as KeptPolicySet;
  } catch (error) {
    return { ok: false, reason: `payload is not JSON (${(error as Error).message})` };
  }
  if (
    !Array.isArray(set?.policies) ||
    typeof set.baseline !== 'object' ||
    set.baseline === null ||
    typeof set.baseline.detected !== 'object'
  )
    return { ok: false, reason: 'payload lacks policies or baseline' };
  return { ok: true, copy: { writtenAt: file.writtenAt, set } };
}
