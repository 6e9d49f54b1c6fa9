// JSON lines, the native format: `{"level":"info","kind":"flow",...FlowEvent}` for decisions and
// `{"level":"warn","kind":<notice kind>,...,"msg":"..."}` for the pipeline's notices. Byte for byte what the
// earlier pino-based sink wrote (test/fixtures/sinks/jsonl.golden.jsonl was written by it), so readers of existing
// logs are unaffected; the one difference is that a lone UTF-16 surrogate is now escaped instead of mangled.
import { describeNotice } from '../../events/sink.js';
import type { Format } from '../types.js';

export const jsonLinesFormat: Format = {
  flow: (event) => JSON.stringify({ level: 'info', kind: 'flow', ...event }),
  notice: (notice) => JSON.stringify({ level: 'warn', ...notice, msg: describeNotice(notice) }),
};
