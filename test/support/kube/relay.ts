// A TCP relay run inside a test network namespace (`node relay.js <config.json>`), for two jobs of the control-plane
// harness: forwarding a Unix socket (reachable from the host netns through the filesystem) to the API server inside
// the netns, and standing as a fault proxy between the agent and the API server. It prints "ready" once listening.
//
// A control socket takes one command per connection and answers "ok <connections open when it came>":
//   pass    forward normally; data held by a stall flows on (a healed partition)
//   drop    reset every open connection once; new connections pass (an API server or load balancer restart)
//   refuse  reset every open connection and every new one until `pass` (API server unreachable)
//   stall   accept and hold connections but move no byte either way until `pass` (a black-holed path)
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';

// Only types are exported: importing this module runs the relay.
export type RelayMode = 'pass' | 'refuse' | 'stall';
export type RelayCommand = RelayMode | 'drop';
const RELAY_COMMANDS: readonly RelayCommand[] = ['pass', 'drop', 'refuse', 'stall'];

export type RelayEndpoint = { path: string } | { host: string; port: number };

export interface RelayConfig {
  listen: RelayEndpoint;
  target: { host: string; port: number };
  /** Unix socket for the commands above; absent for a plain forward. */
  control?: string;
}

interface Pair {
  client: Socket;
  upstream: Socket;
}

function listenOn(server: Server, endpoint: RelayEndpoint): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const ready = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in endpoint) {
      rmSync(endpoint.path, { force: true });
      server.listen(endpoint.path, ready);
    } else server.listen(endpoint.port, endpoint.host, ready);
  });
}

async function main(): Promise<void> {
  const configPath = process.argv[2];
  if (configPath === undefined) throw new Error('usage: relay.js <config.json>');
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as RelayConfig;
  const pairs = new Set<Pair>();
  let mode: RelayMode = 'pass';

  const resetAll = (): void => {
    for (const pair of pairs) {
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
    }
    pairs.clear();
  };
  // A stalled pair stops reading both sockets: nothing is forwarded and TCP back-pressure fills the windows.
  const setFlow = (flowing: boolean): void => {
    for (const pair of pairs) {
      if (flowing) {
        pair.client.resume();
        pair.upstream.resume();
      } else {
        pair.client.pause();
        pair.upstream.pause();
      }
    }
  };

  // By hand rather than pipe(): pipe resumes a source on 'drain', which would end a stall.
  const forward = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (mode === 'pass') from.resume();
    });
    from.on('end', () => to.end());
  };

  const relay = createServer((client) => {
    if (mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection({ host: config.target.host, port: config.target.port });
    const pair = { client, upstream };
    pairs.add(pair);
    const close = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    forward(client, upstream);
    forward(upstream, client);
    // A 'data' listener sets a socket flowing: a connection accepted during a stall is held right away.
    if (mode === 'stall') {
      client.pause();
      upstream.pause();
    }
  });
  await listenOn(relay, config.listen);

  if (config.control !== undefined) {
    const control = createServer((socket) => {
      socket.setEncoding('utf8');
      let input = '';
      socket.on('data', (chunk: string) => {
        input += chunk;
        if (!input.includes('\n')) return;
        const command = input.trim() as RelayCommand;
        if (!RELAY_COMMANDS.includes(command)) {
          socket.end(`error unknown command "${command}" (${RELAY_COMMANDS.join(', ')})\n`);
          return;
        }
        const open = pairs.size;
        if (command === 'drop') resetAll();
        else {
          if (command === 'refuse') resetAll();
          mode = command;
          setFlow(mode === 'pass');
        }
        socket.end(`ok ${open}\n`);
      });
      socket.on('error', () => undefined);
    });
    await listenOn(control, { path: config.control });
  }
  process.stdout.write('ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`relay: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
