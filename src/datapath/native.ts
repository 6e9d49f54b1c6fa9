// Typed interface of the raw libbpf addon (native/) and its loader. The addon holds no policy
// logic: everything it does is named after the libbpf call it makes.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Errors thrown by the addon: message "<libbpf call>: <strerror>", plus the errno. */
export interface NativeError extends Error {
  code: string;
  errno: number;
}

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** A map as the object declares it (before load; what pin reuse compares). */
export interface MapDefinition {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface NativeMap {
  /** Per-CPU maps return one round_up(valueSize, 8)-byte slot per possible CPU. */
  lookup(key: Buffer): Buffer | null;
  update(key: Buffer, value: Buffer, flags?: number): void;
  /** True when an entry was removed, false when there was none. */
  delete(key: Buffer): boolean;
  /** BPF_MAP_UPDATE_BATCH (BPF_ANY): keys and values concatenated, at least one entry. EINVAL where the map type has no batch ops. */
  updateBatch(keys: Buffer, values: Buffer): void;
  /** BPF_MAP_DELETE_BATCH: every key must be present (ENOENT stops the batch at the first one that is not). */
  deleteBatch(keys: Buffer): void;
  keys(): Buffer[];
  close(): void;
}

export interface LinkInfo {
  id: number;
  progId: number;
  type: number;
  cgroupId: bigint;
  attachType: number;
}

export interface NativeLink {
  pin(path: string): void;
  /** Atomically replace the attached program (bpf_link_update). */
  update(program: NativeProgram): void;
  /** Detach from the cgroup even while other references (pins, fds) exist. */
  detach(): void;
  info(): LinkInfo;
  /** Close the fd: an unpinned link detaches, a pinned one keeps enforcing. */
  close(): void;
}

export interface TestRunOptions {
  data?: Buffer;
  ctx?: Buffer;
  dataOutSize?: number;
  ctxOutSize?: number;
  repeat?: number;
}

export interface TestRunResult {
  retval: number;
  /** Average nanoseconds per repetition. */
  duration: number;
  data: Buffer;
  ctx: Buffer;
}

export interface NativeProgram {
  attachCgroup(cgroupPath: string): NativeLink;
  testRun(options?: TestRunOptions): TestRunResult;
  /**
   * An iterator program (iter/tcp, iter/udp): one pass over what it walks; returns what it wrote.
   * Socket iterators walk one network namespace: netnsPath's, or the caller's.
   */
  iterate(netnsPath?: string): string;
}

export interface NativeObject {
  /** Creates maps (reusing pinned ones under the pin root) and loads every program. */
  load(): void;
  /** Before load(): false leaves the program out of load() (a feature the configuration does not use). */
  setAutoload(programName: string, autoload: boolean): void;
  mapDefinitions(): MapDefinition[];
  program(name: string): NativeProgram;
  /** The map with its own fd: usable after the object is closed. */
  map(name: string): NativeMap;
  close(): void;
}

export interface NativeRingBuffer {
  /** Stops and joins the polling thread. */
  close(): void;
  /** Records dropped because JavaScript fell behind the reader's bounded queue. */
  dropped(): number;
}

export interface KernelFeatures {
  cgroupSockAddrProgram: boolean;
  hashMap: boolean;
  lpmTrieMap: boolean;
  ringBufferMap: boolean;
  socketStorageMap: boolean;
  perCpuArrayMap: boolean;
  ancestorCgroupIdHelper: boolean;
  socketStorageHelper: boolean;
  /** TLS SNI and raw/ping sockets (features.tls). */
  cgroupSkbProgram: boolean;
  /** The tc backstop (features.packet). */
  schedClsProgram: boolean;
  /** bpf_loop, used by the ClientHello parser. */
  loopHelper: boolean;
  /** Optional: the bpf_sock_destroy kfunc in socket iterators (a probe iter/tcp program calling it loads). */
  socketDestroy: boolean;
}

export interface BtfStructLayout {
  size: number;
  members: Array<{ name: string; offset: number; size: number }>;
}

export interface NativeAddon {
  BpfObject: new (objectPath: string, pinRoot?: string) => NativeObject;
  BpfMap: { openPinned(path: string): NativeMap };
  BpfLink: { openPinned(path: string): NativeLink };
  RingBuffer: new (map: NativeMap, onRecords: (records: Buffer[] | null, error?: Error) => void) => NativeRingBuffer;
  probeFeatures(): KernelFeatures;
  btfLayout(objectPath: string, structNames: string[]): Record<string, BtfStructLayout>;
  /** Enumerator values of each named enum in the object's BTF. */
  btfEnums(objectPath: string, enumNames: string[]): Record<string, Record<string, number>>;
  /** if_nametoindex, in netnsPath's network namespace when given. */
  ifNameToIndex(name: string, netnsPath?: string): number;
  /** Creates the clsact qdisc if needed and attaches (or replaces) a direct-action ingress filter; returns the program id. */
  tcAttachIngress(program: NativeProgram, ifindex: number, handle: number, priority: number, netnsPath?: string): number;
  /** True when a filter was removed; false when there was none (or no such interface). */
  tcDetachIngress(ifindex: number, handle: number, priority: number, netnsPath?: string): boolean;
  /** The attached program id, or null. */
  tcQueryIngress(ifindex: number, handle: number, priority: number, netnsPath?: string): number | null;
  /** The same three at the interface's egress (what the node delivers into the workload). */
  tcAttachEgress(program: NativeProgram, ifindex: number, handle: number, priority: number, netnsPath?: string): number;
  tcDetachEgress(ifindex: number, handle: number, priority: number, netnsPath?: string): boolean;
  tcQueryEgress(ifindex: number, handle: number, priority: number, netnsPath?: string): number | null;
  /** A socket bound to address:port (0: the kernel picks), listening when TCP; close-on-exec, non-blocking. */
  bindDnsSocket(kind: 'udp4' | 'udp6' | 'tcp4' | 'tcp6', address: string, port: number): { fd: number; port: number };
  /** Another descriptor for the same open socket: closing one leaves the socket open through the other. */
  dupFd(fd: number): number;
  closeFd(fd: number): void;
}

const ADDON_FILE = 'egressguard_native.node';

/** The project root: the nearest ancestor of this module holding native/binding.gyp. */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find native/binding.gyp above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

let cached: NativeAddon | null = null;

/** Loads the addon from native/build/{Release,Debug}; the error lists every path it tried. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const root = projectRoot();
  const candidates = ['Release', 'Debug'].map((kind) => join(root, 'native', 'build', kind, ADDON_FILE));
  const found = candidates.find((candidate) => existsSync(candidate));
  if (found === undefined) {
    throw new Error(
      `egressguard native addon not built: checked ${candidates.join(', ')}. Run \`make native\` (needs libbpf-dev, libelf-dev, zlib1g-dev: \`make deps\`).`,
    );
  }
  const require = createRequire(import.meta.url);
  try {
    cached = require(found) as NativeAddon;
  } catch (error) {
    throw new Error(`loading the native addon ${found} failed: ${(error as Error).message}. Rebuild it with \`make native\`.`);
  }
  return cached;
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error && typeof (error as Partial<NativeError>).errno === 'number';
}
