// Building the agent image for real without a registry: Debian's dockerd with its own containerd, data and sockets
// under a scratch directory and no network setup of its own (no bridge, no iptables), base images made with
// debootstrap (cached outside the repository, keyed by what they hold) and `docker import`, and an npm cache so the
// build runs with --network=none.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: dist/test/e2e/ → three levels up. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Outside the repository, shared by runs: debootstrap and npm downloads are slow, their results never change per key. */
const CACHE_DIR = process.env.EGRESSGUARD_TEST_CACHE ?? '/var/cache/egressguard-test';

/** The Debian docker client; another `docker` may come first on PATH. */
const DOCKER = '/usr/bin/docker';

const TRUST_KEY = '/etc/docker/key.json';

const DEBIAN_MIRROR = 'http://deb.debian.org/debian';

/** The two bases, with the packages scripts/image-packages.sh checks for, so the build installs nothing. */
export const BASES = {
  build: {
    tag: 'node:20-bookworm',
    include: ['clang', 'llvm', 'libbpf-dev', 'libelf-dev', 'zlib1g-dev', 'make', 'g++', 'python3', 'pkg-config'],
    /** Node with its headers and npm, where the official node images have them. */
    node: 'full',
  },
  runtime: {
    tag: 'node:20-bookworm-slim',
    include: ['libbpf1', 'libelf1', 'zlib1g', 'iproute2', 'libstdc++6'],
    node: 'binary',
  },
} as const;

function run(argv: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
  const result = spawnSync(argv[0]!, argv.slice(1), {
    cwd: options.cwd,
    env: options.env ?? process.env,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    timeout: options.timeoutMs ?? 600_000,
  });
  if (result.status !== 0)
    throw new Error(
      `${argv.join(' ')} failed (${result.status ?? result.signal ?? result.error?.message}):\n${result.stdout}\n${result.stderr}`,
    );
  return result.stdout;
}

/**
 * A debootstrap (bookworm, minbase) root filesystem as a gzipped tarball, cached under a name keyed by its suite,
 * variant, mirror and packages (the key never changes for the same inputs; delete the file to refresh it).
 */
export function debootstrapTarball(name: keyof typeof BASES): string {
  const spec = { suite: 'bookworm', variant: 'minbase', mirror: DEBIAN_MIRROR, include: [...BASES[name].include].sort() };
  const key = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
  const tarball = join(CACHE_DIR, 'image-bases', `${name}-${key}.tar.gz`);
  if (existsSync(tarball)) return tarball;
  mkdirSync(dirname(tarball), { recursive: true });
  const rootfs = `${tarball}.rootfs`;
  rmSync(rootfs, { recursive: true, force: true });
  try {
    run(['debootstrap', `--variant=${spec.variant}`, `--include=${spec.include.join(',')}`, spec.suite, rootfs, spec.mirror], {
      timeoutMs: 1_800_000,
    });
    run(['tar', '-C', rootfs, '--numeric-owner', '-czf', `${tarball}.partial`, '.'], { timeoutMs: 600_000 });
    renameSync(`${tarball}.partial`, tarball);
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
    rmSync(`${tarball}.partial`, { force: true });
  }
  return tarball;
}

/** An npm cache holding every package of package-lock.json the image build installs, keyed by the lock file. */
export function npmCache(): string {
  const lock = readFileSync(join(REPO_ROOT, 'package-lock.json'));
  const key = createHash('sha256').update(lock).digest('hex').slice(0, 16);
  const cache = join(CACHE_DIR, `npm-${key}`);
  if (existsSync(join(cache, '.complete'))) return cache;
  const work = `${cache}.work`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(REPO_ROOT, file), join(work, file));
    // The same flags as the Dockerfile, online: what it installs offline is then in the cache.
    run(['npm', 'ci', '--no-audit', '--no-fund', '--ignore-scripts', '--omit=peer', '--cache', cache], { cwd: work, timeoutMs: 900_000 });
    writeFileSync(join(cache, '.complete'), '');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return cache;
}

/** The files of the checkout (tracked and untracked, not ignored) plus the npm cache: the offline build context. */
export function stageBuildContext(target: string, cache: string): void {
  const files = run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT }).split('\0');
  for (const file of files) {
    // Only regular files: the worktree's node_modules symlink and deleted files are not sources.
    if (file === '' || !existsSync(join(REPO_ROOT, file)) || !lstatSync(join(REPO_ROOT, file)).isFile()) continue;
    mkdirSync(dirname(join(target, file)), { recursive: true });
    copyFileSync(join(REPO_ROOT, file), join(target, file));
  }
  cpSync(cache, join(target, '.npm-cache'), { recursive: true });
}

export type Spawner = (argv: readonly string[]) => ChildProcess;

/** containerd and dockerd of our own: every path under `dir`, no bridge, no iptables, stopped by PID. */
export class ScratchDocker {
  readonly socket: string;
  private readonly children: ChildProcess[] = [];

  constructor(readonly dir: string) {
    this.socket = join(dir, 'docker.sock');
  }

  private get env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_HOST: `unix://${this.socket}`, DOCKER_CONFIG: join(this.dir, 'cli') };
  }

  /** dockerd writes its trust key to /etc/docker/key.json whatever its flags: removed at stop when it was ours. */
  private trustKeyWasThere = true;

  /** Starts containerd and dockerd with `spawner` (e.g. inside a lab's node namespace) and waits until docker answers. */
  async start(spawner: Spawner): Promise<void> {
    this.trustKeyWasThere = existsSync(TRUST_KEY);
    mkdirSync(join(this.dir, 'cli'), { recursive: true });
    const containerdSocket = this.containerdSocket;
    const containerdConfig = join(this.dir, 'containerd.toml');
    writeFileSync(
      containerdConfig,
      [
        'version = 2',
        `root = "${join(this.dir, 'containerd-root')}"`,
        `state = "${join(this.dir, 'containerd-state')}"`,
        // Only what dockerd uses: no CRI plugin (it would look for CNI and a kubelet).
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${containerdSocket}"`,
        '[ttrpc]',
        `  address = "${containerdSocket}.ttrpc"`,
        '',
      ].join('\n'),
    );
    writeFileSync(join(this.dir, 'daemon.json'), '{}\n');
    this.children.push(spawner(['containerd', '--config', containerdConfig]));
    await this.waitFor(() => existsSync(containerdSocket), 'containerd socket');
    this.children.push(
      spawner([
        'dockerd',
        `--config-file=${join(this.dir, 'daemon.json')}`,
        `--data-root=${join(this.dir, 'data')}`,
        `--exec-root=${join(this.dir, 'exec')}`,
        `--pidfile=${join(this.dir, 'dockerd.pid')}`,
        `--host=unix://${this.socket}`,
        `--containerd=${containerdSocket}`,
        '--bridge=none',
        '--iptables=false',
        '--ip6tables=false',
        '--ip-forward=false',
        '--ip-masq=false',
        '--storage-driver=overlay2',
      ]),
    );
    await this.waitFor(() => spawnSync(DOCKER, ['version'], { env: this.env, stdio: 'ignore' }).status === 0, 'dockerd');
  }

  private async waitFor(ready: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const dead = this.children.find((child) => child.exitCode !== null || child.signalCode !== null);
      if (dead) throw new Error(`${what}: ${dead.spawnargs.join(' ')} exited (${dead.exitCode ?? dead.signalCode})`);
      if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  docker(args: readonly string[], timeoutMs?: number): string {
    return run([DOCKER, ...args], { env: this.env, timeoutMs });
  }

  private get containerdSocket(): string {
    return join(this.dir, 'containerd.sock');
  }

  /**
   * Copies a built image into containerd, where `ctr run` runs it as a kubelet's containerd would (Debian's docker
   * 20.10 does not know CAP_BPF or CAP_PERFMON; containerd reads the capability list from the kernel). Returns the
   * image reference for ctr.
   */
  importToContainerd(image: string): string {
    const archive = join(this.dir, 'image.tar');
    this.docker(['save', '--output', archive, image]);
    run(this.ctrArgv(['images', 'import', archive]));
    rmSync(archive, { force: true });
    return image.includes('/') ? image : `docker.io/library/${image}`;
  }

  /** The argv of `ctr` against this containerd, in a namespace of its own. */
  ctrArgv(args: readonly string[]): string[] {
    return ['ctr', `--address=${this.containerdSocket}`, '--namespace=egressguard-test', ...args];
  }

  /** Imports the debootstrap bases and adds this host's Node 20 where the official node images keep it. */
  makeBaseImages(): void {
    for (const [name, base] of Object.entries(BASES) as [keyof typeof BASES, (typeof BASES)[keyof typeof BASES]][]) {
      const imported = `egressguard-test/debootstrap-${name}:bookworm`;
      this.docker(['import', debootstrapTarball(name), imported]);
      const context = join(this.dir, `base-${name}`);
      mkdirSync(join(context, 'bin'), { recursive: true });
      copyFileSync(process.execPath, join(context, 'bin', 'node'));
      const lines = [`FROM ${imported}`, 'COPY bin/node /usr/local/bin/node'];
      if (base.node === 'full') {
        cpSync('/usr/include/node', join(context, 'include', 'node'), { recursive: true, dereference: true });
        cpSync('/usr/lib/node_modules/npm', join(context, 'npm'), { recursive: true, dereference: true });
        lines.push(
          'COPY include/node /usr/local/include/node',
          'COPY npm /usr/local/lib/node_modules/npm',
          'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx',
        );
      }
      writeFileSync(join(context, 'Dockerfile'), `${lines.join('\n')}\n`);
      this.docker(['build', '--network=none', '-t', base.tag, context]);
      rmSync(context, { recursive: true, force: true });
    }
  }

  /** Stops dockerd, then containerd (SIGTERM, by PID), and removes the scratch directory. */
  async stop(): Promise<void> {
    for (const child of [...this.children].reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
    }
    this.children.length = 0;
    // overlay2 and shm mounts of a daemon that died hard: unmount before removing.
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[1] ?? '')
      .filter((mountPoint) => mountPoint.startsWith(`${this.dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const mountPoint of mounts) spawnSync('umount', ['-l', mountPoint]);
    rmSync(this.dir, { recursive: true, force: true });
    if (!this.trustKeyWasThere) rmSync(TRUST_KEY, { force: true });
  }
}
