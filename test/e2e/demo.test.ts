// The README's main job, end to end: the demo must contain the rogue server and print the policy log.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { runDemo } from '../../lab/demo.js';
import { privilegedSkip } from '../support/privileged.js';

test('egressguard demo: discovery, then enforcement contains the rogue server', { skip: privilegedSkip() }, async () => {
  const lines: string[] = [];
  const code = await runDemo([], (line) => lines.push(line));
  const output = lines.join('\n');
  assert.equal(code, 0, output);
  assert.doesNotMatch(output, /FAIL/);
  assert.match(output, /Contained: every expectation held\./);
  // The phase-2 policy log names the rules that decided, with workload and FQDN.
  const phase2 = output.slice(output.indexOf('Policy log (phase 2)'));
  assert.match(phase2, /obot-mcp\/ms1kbsng-xyz\s+198\.18\.10\.2\s+api\.openai\.com\s+\S+\s+443\/tcp\s+tls\s+allow-openai\s+2\s+permitted/);
  // Domain fronting: an address learned for api.openai.com, a ClientHello naming another site.
  assert.match(
    phase2,
    /obot-mcp\/ms1kbsng-xyz\s+198\.18\.10\.2\s+unlisted\.example\s+198\.18\.100\.10\s+443\/tcp\s+tls\s+deny-all\s+2\s+denied/,
  );
  assert.match(phase2, /obot-mcp\/pt5rfqaz-abc\s+198\.18\.11\.2\s+httpbin\.org\s+\S+\s+53\/udp\s+dns\s+deny-all\s+2\s+denied/);
  assert.match(phase2, /obot-mcp\/pt5rfqaz-abc\s+198\.18\.11\.2\s+webhook\.site\s+\S+\s+53\/udp\s+dns\s+deny-all\s+2\s+denied/);
  assert.match(phase2, /198\.18\.100\.20\s+443\/tcp\s+connect\s+deny-all\s+2\s+denied/);
});
