// Reading the files a sink's config names (CA bundles, client certificates, tokens) with errors that say which.
import { readFileSync } from 'node:fs';

export function readConfigFile(field: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`${field}: cannot read ${path}: ${(error as Error).message}`);
  }
}
