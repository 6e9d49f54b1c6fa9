// The lab's "internet": one process in the inet netns serving every test host address.
// TCP: writes `hello from <name>\n` and closes. UDP: echoes each datagram. Prints "ready" once every socket listens.
// Usage: node internet-server.js CONFIG.json   (config: InternetServerConfig, written by Lab.create)
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer, isIPv6 } from 'node:net';

export interface InternetServerConfig {
  hosts: { name: string; addresses: string[] }[];
  tcpPorts: number[];
  udpPorts: number[];
}

function listenTcp(name: string, address: string, port: number): Promise<void> {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.end(`hello from ${name}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port, ipv6Only: isIPv6(address) }, () => resolve());
  });
}

function listenUdp(address: string, port: number): Promise<void> {
  const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', ipv6Only: isIPv6(address) });
  // A failed echo (e.g. the peer is gone) is the peer's problem, not a reason to stop serving.
  socket.on('message', (message, rinfo) => socket.send(message, rinfo.port, rinfo.address, () => undefined));
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => resolve());
  });
}

async function main(configPath: string): Promise<void> {
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as InternetServerConfig;
  const listening: Promise<void>[] = [];
  for (const host of config.hosts) {
    for (const address of host.addresses) {
      for (const port of config.tcpPorts) listening.push(listenTcp(host.name, address, port));
      for (const port of config.udpPorts) listening.push(listenUdp(address, port));
    }
  }
  await Promise.all(listening);
  process.stdout.write('ready\n');
}

const configPath = process.argv[2];
if (configPath === undefined) {
  process.stderr.write('usage: internet-server CONFIG.json\n');
  process.exit(2);
}
main(configPath).catch((error: unknown) => {
  process.stderr.write(`internet-server: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
