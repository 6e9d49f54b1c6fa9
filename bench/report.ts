// Writes docs/benchmarks.md and its SVG charts from the JSON the benchmarks left in BENCH_RESULTS (dist/bench-results):
// one section per benchmark that ran, each figure next to the baseline measured in the same run, and the issue's
// goals with the margin by which each is met or missed. Run after the benchmarks: node dist/bench/report.js.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import type { ScaleSample } from './scale.js';

const RESULTS = process.env.BENCH_RESULTS ?? 'dist/bench-results';
const DOCS = process.env.BENCH_DOCS ?? 'docs';
const CHARTS = join(DOCS, 'benchmarks');

interface Spread {
  median: number;
  min: number;
  max: number;
}
interface Machine {
  loadAverage: number[];
  cpus: number;
  kernel: string;
}
interface DnsRate {
  rate: string;
  answeredShare: number;
  answeredPerSecond: Spread;
  averageMs: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  cpuUsPerQuery: number | null;
}
interface DnsResult {
  machine: Machine;
  date: string;
  rounds: number;
  secondsPerSample: number;
  command: string;
  summary: Partial<Record<'direct' | 'egressguard' | 'dnsmasq', DnsRate[]>>;
}
interface ConnectResult {
  machine: Machine;
  date: string;
  rounds: number;
  connects: number;
  scales: number[];
  command: string;
  summary: Record<string, { connectsPerSecond: Spread; p50us: Spread; p99us: Spread; agentCpuUsPerConnect: number | null }>;
  ratios: Record<string, number>;
  /** Per egressguard side, one list of the lab's programs per sample. */
  bpfStats: Record<string, { name: string; type: string; runs: number; nsPerRun: number; nsPerConnect: number }[][]>;
}
interface ScaleResult {
  machine: Machine;
  date: string;
  command: string;
  domains: number;
  samples: ScaleSample[];
  ratios: { workloads: number; compileAndLoad: number; learn: number; rssGrowth: number; mapBytes: number }[];
}
interface PropagationResult {
  machine: Machine;
  date: string;
  edits: number;
  command: string;
  propagationMs: { p50: number; p99: number; max: number };
  proberResolutionUs: { attempts: number; gapP50us: number; gapP99us: number } | null;
}
interface TlsResult {
  machine: Machine;
  date: string;
  rounds: number;
  mebibytes: number;
  handshakes: number;
  withoutSniAndTc: { mebibytesPerSecond: number; handshakesPerSecond: number };
  withSniAndTc: { mebibytesPerSecond: number; handshakesPerSecond: number };
  ratios: { throughput: number; tlsConnectRate: number };
}

function load<T>(name: string): T | null {
  const path = join(RESULTS, `${name}.json`);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : null;
}

const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
const range = (s: Spread, digits: number) => `${fixed(s.median, digits)} (${fixed(s.min, digits)}–${fixed(s.max, digits)})`;
const machineLine = (m: Machine, date: string) =>
  `Run ${date} on ${m.cpus} CPUs, kernel ${m.kernel}, load average ${m.loadAverage.map((l) => l.toFixed(1)).join(' / ')} (1/5/15 min) when it ended.`;

interface Series {
  name: string;
  values: (number | null)[];
}

/** A line chart as SVG: categorical x (labels), linear y from 0, one coloured line with markers per series. */
export function lineChart(title: string, xTitle: string, xLabels: string[], yTitle: string, series: Series[]): string {
  const [width, height, left, right, top, bottom] = [640, 360, 70, 150, 40, 50];
  const colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const yMax = niceCeiling(Math.max(1e-9, ...all));
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const x = (i: number) => left + (xLabels.length === 1 ? plotW / 2 : (i * plotW) / (xLabels.length - 1));
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  for (let tick = 0; tick <= 4; tick++) {
    const value = (yMax * tick) / 4;
    parts.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${y(value)}" y2="${y(value)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(value) + 4}" text-anchor="end">${escape(formatTick(value))}</text>`,
    );
  }
  xLabels.forEach((label, i) => parts.push(`<text x="${x(i)}" y="${top + plotH + 18}" text-anchor="middle">${escape(label)}</text>`));
  parts.push(
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="black"/>`,
    `<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="black"/>`,
    `<text x="${left + plotW / 2}" y="${height - 8}" text-anchor="middle">${escape(xTitle)}</text>`,
    `<text x="16" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${top + plotH / 2})">${escape(yTitle)}</text>`,
  );
  series.forEach((s, index) => {
    const colour = colours[index % colours.length]!;
    const points = s.values.flatMap((v, i) => (v === null || !Number.isFinite(v) ? [] : [[x(i), y(v)] as const]));
    if (points.length > 1) {
      parts.push(
        `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.map(([px, py]) => `${px},${py}`).join(' ')}"/>`,
      );
    }
    for (const [px, py] of points) parts.push(`<circle cx="${px}" cy="${py}" r="3" fill="${colour}"/>`);
    const legendY = top + 10 + index * 18;
    parts.push(
      `<line x1="${left + plotW + 12}" x2="${left + plotW + 32}" y1="${legendY}" y2="${legendY}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${left + plotW + 36}" y="${legendY + 4}">${escape(s.name)}</text>`,
    );
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

function niceCeiling(value: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

function formatTick(value: number): string {
  if (value >= 1000) return `${(value / 1000).toFixed(value % 1000 === 0 ? 0 : 1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

function writeChart(file: string, svg: string): string {
  mkdirSync(CHARTS, { recursive: true });
  writeFileSync(join(CHARTS, file), svg);
  return `benchmarks/${file}`;
}

/** "met" or "missed by X" for a goal where lower (or higher) is better. */
function verdict(measured: number, goal: number, better: 'lower' | 'higher', unit: string): string {
  if (!Number.isFinite(measured)) return 'not measured';
  const met = better === 'lower' ? measured <= goal : measured >= goal;
  return met ? 'met' : `missed by ${fixed(Math.abs(measured - goal), unit === '' ? 3 : 2)}${unit}`;
}

/** Answered queries per second over the offered rate. */
function ofOffered(entry: DnsRate): number {
  return entry.answeredPerSecond.median / Number(entry.rate);
}

function dnsSection(result: DnsResult): string[] {
  const sides = (['direct', 'egressguard', 'dnsmasq'] as const).filter((side) => result.summary[side] !== undefined);
  const rates = result.summary[sides[0]!]!.map((entry) => entry.rate);
  const at = (side: (typeof sides)[number], rate: string) => result.summary[side]!.find((entry) => entry.rate === rate)!;
  const lines = [
    '## DNS: latency and saturation (dnsperf)',
    '',
    machineLine(result.machine, result.date),
    `${result.rounds} rounds, the three sides in alternating order, ${result.secondsPerSample} s per sample: \`${result.command}\`, run in the pod.`,
    'direct = the lab resolver (dnsmasq, authoritative, logging every query) without any agent; egressguard = the agent',
    "enforcing, the pod's port-53 traffic steered to its proxy by the kernel; dnsmasq = a dnsmasq forwarder in the node",
    'netns filling an nftables set with the answers (`--nftset`), no agent. Latencies are per answered query; `max` offers',
    'as many queries as dnsperf keeps 100 outstanding. Medians with the smallest and largest sample in parentheses.',
    '',
    'answered = share of the queries dnsperf sent; of offered = answered q/s ÷ offered q/s (dnsperf stops sending when 100 are',
    'outstanding, so a saturated server shows fewer queries sent, not lost ones). CPU µs per query: the answering',
    "process's user + system time (agent, or the dnsmasq forwarder) over the sample ÷ queries answered.",
    '',
    '| offered q/s | side | answered | of offered | answered q/s | average ms | added average ms | p50 ms | p99 ms | CPU µs per query |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const rate of rates) {
    const base = result.summary.direct ? at('direct', rate).averageMs.median : NaN;
    for (const side of sides) {
      const s = at(side, rate);
      const added = side === 'direct' ? '—' : fixed(s.averageMs.median - base, 3);
      lines.push(
        `| ${rate} | ${side} | ${fixed(s.answeredShare * 100, 1)} % | ${rate === 'max' ? '—' : `${fixed(ofOffered(s) * 100, 1)} %`} | ${range(s.answeredPerSecond, 0)} | ${range(s.averageMs, 3)} | ${added} | ${range(s.p50Ms, 3)} | ${range(s.p99Ms, 3)} | ${s.cpuUsPerQuery === null ? '—' : fixed(s.cpuUsPerQuery, 0)} |`,
      );
    }
  }
  const chartSeries = (pick: (entry: DnsRate) => number) =>
    sides.map((side) => ({ name: side, values: rates.map((rate) => pick(at(side, rate))) }));
  const answered = writeChart(
    'dns-answered.svg',
    lineChart(
      'DNS answered queries per second',
      'offered queries per second',
      rates,
      'answered q/s',
      chartSeries((e) => e.answeredPerSecond.median),
    ),
  );
  const latency = writeChart(
    'dns-latency.svg',
    lineChart(
      'DNS average latency',
      'offered queries per second',
      rates,
      'ms',
      chartSeries((e) => e.averageMs.median),
    ),
  );
  lines.push('', `![answered queries per second](${answered})`, '', `![average latency](${latency})`, '');
  if (result.summary.direct && result.summary.egressguard) {
    const goalRows: string[] = [];
    const low = rates.find((rate) => rate === '2000');
    const high = rates.find((rate) => rate === '10000');
    if (low !== undefined) {
      const added = at('egressguard', low).averageMs.median - at('direct', low).averageMs.median;
      goalRows.push(`| added average latency at 2,000 q/s ≤ 0.10 ms | ${fixed(added, 3)} ms | ${verdict(added, 0.1, 'lower', ' ms')} |`);
      const p99 = at('egressguard', low).p99Ms.median;
      goalRows.push(`| p99 at 2,000 q/s ≤ 2 ms | ${fixed(p99, 3)} ms | ${verdict(p99, 2, 'lower', ' ms')} |`);
    }
    if (high !== undefined) {
      // Every offered query: dnsperf's own pacing leaves a fraction of a per cent unsent at the end of a run.
      const share = Math.min(at('egressguard', high).answeredShare, ofOffered(at('egressguard', high))) * 100;
      goalRows.push(`| every query answered at 10,000 q/s | ${fixed(share, 2)} % of offered | ${verdict(share, 99.9, 'higher', ' %')} |`);
      const added = at('egressguard', high).averageMs.median - at('direct', high).averageMs.median;
      goalRows.push(`| added average at 10,000 q/s ≤ 0.5 ms | ${fixed(added, 3)} ms | ${verdict(added, 0.5, 'lower', ' ms')} |`);
    }
    if (rates.includes('max') && result.summary.dnsmasq) {
      const ratio = at('egressguard', 'max').answeredPerSecond.median / at('dnsmasq', 'max').answeredPerSecond.median;
      goalRows.push(`| saturation ≥ 2 × dnsmasq's | ${fixed(ratio, 2)} × | ${verdict(ratio, 2, 'higher', ' ×')} |`);
    }
    lines.push('Goals of issue 10:', '', '| goal | measured | |', '|---|---|---|', ...goalRows, '');
  }
  return lines;
}

function connectSection(result: ConnectResult): string[] {
  const sides = Object.keys(result.summary);
  const enforced = sides.filter((side) => side.startsWith('egressguard-'));
  const largest = Math.max(...result.scales).toLocaleString('en');
  const p50 = (side: string) => result.summary[side]!.p50us.median;
  const lines = [
    '## Per-connection cost',
    '',
    machineLine(result.machine, result.date),
    `${result.rounds} rounds, sides in alternating order, ${result.connects} sequential connects per sample: \`${result.command}\`.`,
    'none = no agent, no rules (the baseline); egressguard-N = the agent enforcing the allowed name (a webGroup rule,',
    'so each connect waits for its ClientHello) plus a rule with N other /32 CIDRs, and N addresses learned for the',
    "name's rule; iptables-N = N rules in the node FORWARD path, the allowed destination last, established traffic",
    `accepted first; nftset = one rule over a set of ${largest} addresses. agent CPU = the agent's user + system time`,
    'per connect during the sample (the connect events it reads). Squid peek-and-splice is not measured yet.',
    '',
    '| side | connects/s | ratio to none | p50 µs | p50 added µs | p99 µs | agent CPU µs per connect |',
    '|---|---|---|---|---|---|---|',
    ...sides.map((side) => {
      const s = result.summary[side]!;
      const added = side === 'none' || result.summary.none === undefined ? '—' : fixed(p50(side) - p50('none'), 0);
      const agentCpu = s.agentCpuUsPerConnect === null ? '—' : fixed(s.agentCpuUsPerConnect, 0);
      return `| ${side} | ${range(s.connectsPerSecond, 0)} | ${fixed(result.ratios[side]!, 3)} | ${range(s.p50us, 0)} | ${added} | ${range(s.p99us, 0)} | ${agentCpu} |`;
    }),
    '',
  ];
  const chart = writeChart(
    'connect-ratio.svg',
    lineChart('Connect rate, ratio to no enforcement', 'side', sides, 'ratio', [
      { name: 'connects/s ÷ none', values: sides.map((s) => result.ratios[s]!) },
    ]),
  );
  lines.push(`![connect rate ratios](${chart})`, '');
  if (enforced.length > 1) {
    const flat = writeChart(
      'connect-scale.svg',
      lineChart(
        'Connect p50 with N CIDRs and N learned addresses',
        'N',
        enforced.map((side) => side.slice('egressguard-'.length)),
        'µs',
        [
          { name: 'egressguard p50', values: enforced.map(p50) },
          { name: 'none p50', values: enforced.map(() => (result.summary.none ? p50('none') : null)) },
        ],
      ),
    );
    lines.push(`![connect p50 against N](${flat})`, '');
  }
  const programs = [...new Set(enforced.flatMap((side) => (result.bpfStats[side]?.at(-1) ?? []).map((p) => p.name)))];
  if (programs.length > 0) {
    lines.push(
      "Where the time goes in the kernel (`kernel.bpf_stats_enabled=1` during each side's last sample; `run_time_ns` ÷ `run_cnt` of each of the lab's programs from `bpftool prog show`), ns per run (ns per connect):",
      '',
      `| program | ${enforced.join(' | ')} |`,
      `|---|${enforced.map(() => '---|').join('')}`,
      ...programs.map((name) => {
        const cells = enforced.map((side) => {
          const p = result.bpfStats[side]?.at(-1)?.find((cost) => cost.name === name);
          return p === undefined ? '—' : `${fixed(p.nsPerRun, 0)} (${fixed(p.nsPerConnect, 0)})`;
        });
        return `| ${name} | ${cells.join(' | ')} |`;
      }),
      '',
    );
  }
  const worst = Math.min(...enforced.map((side) => result.ratios[side] ?? NaN));
  lines.push(
    `Goal: enforced connect rate ≥ 0.97 of unenforced at every N: lowest ${fixed(worst, 3)}, ${verdict(worst, 0.97, 'higher', '')}.`,
    '',
  );
  return lines;
}

function scaleSection(result: ScaleResult): string[] {
  const mib = (bytes: number) => fixed(bytes / 2 ** 20, 1);
  const largest = result.samples.at(-1)!;
  return [
    '## Scale (host mode)',
    '',
    machineLine(result.machine, result.date),
    `\`${result.command}\`: W workloads (cgroups of a netns lab), each with the translator's policy permitting ${result.domains} names of its`,
    'own, then one address learned per name; the real datapath (programs loaded and attached, maps pinned). compile and',
    "load = the policy store accepting the W files and the reconciler's first pass writing every workload into the kernel;",
    'learn = writing the learned addresses; map memory = `bytes_memlock` of every pinned map; RSS = the bench process',
    '(policy store, reconciler, datapath mirrors) at the end, and its growth over the run. Ratios: per workload at W ÷ at',
    'the smallest W (1 = linear), map memory as a whole ÷ at the smallest W.',
    '',
    '| workloads | learned | compile and load ms | ratio | learn ms | ratio | map memory MiB | ratio | RSS MiB (growth) | RSS growth ratio |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...result.samples.map((s, i) => {
      const r = result.ratios[i]!;
      const rss = `${fixed(s.rssMiB, 0)} (${fixed(s.rssGrowthMiB, 0)})`;
      return `| ${s.workloads} | ${s.learned.toLocaleString('en')} | ${fixed(s.compileAndLoadMs, 0)} | ${fixed(r.compileAndLoad, 2)} | ${fixed(s.learnMs, 0)} | ${fixed(r.learn, 2)} | ${mib(s.mapBytes)} | ${fixed(r.mapBytes, 2)} | ${rss} | ${fixed(r.rssGrowth, 2)} |`;
    }),
    '',
    `Largest maps at ${largest.workloads} workloads: ${largest.maps.map((m) => `${m.name} ${mib(m.bytes)} MiB`).join(', ')}.`,
    '',
  ];
}

function propagationSection(result: PropagationResult): string[] {
  const resolution = result.proberResolutionUs;
  return [
    '## Policy propagation (host mode)',
    '',
    machineLine(result.machine, result.date),
    `\`${result.command}\`: ${result.edits} edits of the agent's policy file, permitting and denying one destination in turn;`,
    "each measured from just before the write to the pod's first connect attempt with the new verdict.",
    resolution === null
      ? ''
      : `Baseline, the prober's resolution: its attempts were ${fixed(resolution.gapP50us / 1000, 2)} ms apart at p50, ${fixed(resolution.gapP99us / 1000, 1)} ms at p99 (${resolution.attempts} attempts).`,
    '',
    '| p50 ms | p99 ms | max ms | goal p99 ≤ 50 ms |',
    '|---|---|---|---|',
    `| ${fixed(result.propagationMs.p50, 1)} | ${fixed(result.propagationMs.p99, 1)} | ${fixed(result.propagationMs.max, 1)} | ${verdict(result.propagationMs.p99, 50, 'lower', ' ms')} |`,
    '',
  ];
}

function tlsSection(result: TlsResult): string[] {
  return [
    '## TLS',
    '',
    machineLine(result.machine, result.date),
    `\`node dist/bench/tls.js\`: ${result.rounds} rounds; one flow uploading ${result.mebibytes} MiB, ${result.handshakes} sequential verified handshakes; with vs without the SNI check and the tc backstop.`,
    '',
    '| | without | with SNI + tc | ratio | goal |',
    '|---|---|---|---|---|',
    `| throughput, MiB/s | ${fixed(result.withoutSniAndTc.mebibytesPerSecond, 1)} | ${fixed(result.withSniAndTc.mebibytesPerSecond, 1)} | ${fixed(result.ratios.throughput, 3)} | ≥ 0.98: ${verdict(result.ratios.throughput, 0.98, 'higher', '')} |`,
    `| handshakes/s | ${fixed(result.withoutSniAndTc.handshakesPerSecond, 0)} | ${fixed(result.withSniAndTc.handshakesPerSecond, 0)} | ${fixed(result.ratios.tlsConnectRate, 3)} | ≥ 0.97: ${verdict(result.ratios.tlsConnectRate, 0.97, 'higher', '')} |`,
    '',
  ];
}

const sections: string[][] = [];
const dns = load<DnsResult>('dns');
const connect = load<ConnectResult>('connect');
const tls = load<TlsResult>('tls');
const propagation = load<PropagationResult>('propagation');
const scale = load<ScaleResult>('scale');
if (dns) sections.push(dnsSection(dns));
if (connect) sections.push(connectSection(connect));
if (tls) sections.push(tlsSection(tls));
if (propagation) sections.push(propagationSection(propagation));
if (scale) sections.push(scaleSection(scale));
const notes = existsSync(join(DOCS, 'benchmarks-notes.md')) ? readFileSync(join(DOCS, 'benchmarks-notes.md'), 'utf8') : '';
const text = [
  '# Benchmarks',
  '',
  '<!-- Written by `make bench` (bench/report.ts) from the JSON in dist/bench-results; edit docs/benchmarks-notes.md instead. -->',
  '',
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, kernel ${release()}. Every figure is measured next to its baseline in the same`,
  'run, rounds alternating the order of the sides; the machine is shared, so absolute numbers move between runs and the',
  'ratios within one run are what count. `make bench` runs everything (root, the netns lab); each script runs alone too.',
  '',
  ...sections.flat(),
  notes,
].join('\n');
writeFileSync(join(DOCS, 'benchmarks.md'), text);
console.log(`wrote ${join(DOCS, 'benchmarks.md')} (${sections.length} sections)`);
