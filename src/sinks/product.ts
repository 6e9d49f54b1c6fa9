// The product as SIEM records name it, its version read once from the package manifest.
import { readFileSync } from 'node:fs';
import type { ProductInfo } from './formats/common.js';

function packageVersion(): string {
  // dist/src/sinks/product.js and src/sinks/product.ts both sit three levels below the package root.
  const manifest = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}

export const PRODUCT: ProductInfo = { name: 'egressguard', vendor: 'egressguard', version: packageVersion() };
