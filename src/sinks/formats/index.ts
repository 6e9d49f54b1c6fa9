// The record formats a sink can be configured with (`format:` in each `events.sinks[]` entry).
import type { Format } from '../types.js';
import { cefFormat } from './cef.js';
import type { ProductInfo } from './common.js';
import { ecsFormat } from './ecs.js';
import { jsonLinesFormat } from './jsonl.js';
import { ocsfFormat } from './ocsf.js';

export const FORMAT_NAMES = ['json', 'ocsf', 'ecs', 'cef'] as const;
export type FormatName = (typeof FORMAT_NAMES)[number];

export function createFormat(name: FormatName, product: ProductInfo): Format {
  switch (name) {
    case 'json':
      return jsonLinesFormat;
    case 'ocsf':
      return ocsfFormat(product);
    case 'ecs':
      return ecsFormat(product);
    case 'cef':
      return cefFormat(product);
  }
}

/** Whether the format's records are JSON objects (an envelope can then embed them as objects, not strings). */
export function isJsonFormat(name: FormatName): boolean {
  return name !== 'cef';
}
