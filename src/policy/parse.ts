// Reading manifests: single or multi-document YAML (and `kind: List`), each object validated with its file, document
// index and line numbers. Objects with errors are left out; the caller decides what a file with errors means.
import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isScalar, isSeq, parseAllDocuments, type Document } from 'yaml';
import type { PolicyDiagnostic } from './types.js';
import { validateObject, type AcceptedObject, type ObjectSource, type PathSegment, type ValidationOptions } from './validate.js';

export interface ParseResult {
  /** Objects that passed validation (they may carry warnings). */
  objects: AcceptedObject[];
  diagnostics: PolicyDiagnostic[];
  /** No diagnostic of severity error. */
  ok: boolean;
}

/** Line (1-based) of the node at `path` in `doc`, or of the deepest ancestor found. */
function lineOf(doc: Document, counter: LineCounter, path: PathSegment[], key: boolean): number | undefined {
  let node: unknown = doc.contents;
  let found: unknown = node;
  for (let i = 0; i < path.length; i++) {
    const segment = path[i];
    if (isMap(node)) {
      const pair = node.items.find((item) => (isScalar(item.key) ? item.key.value : item.key) === segment);
      if (pair === undefined) break;
      if (key && i === path.length - 1) {
        found = pair.key;
        break;
      }
      node = pair.value;
      found = node ?? pair.key;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
      if (node === undefined) break;
      found = node;
    } else break;
  }
  const range = (found as { range?: [number, number, number] } | null)?.range;
  return range === undefined ? undefined : counter.linePos(range[0]).line;
}

function isListObject(value: unknown): value is { kind: 'List'; items: unknown } {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'List';
}

function identity(object: AcceptedObject): string {
  return `${object.kind} ${object.namespace}/${object.name}`;
}

/** Parses and validates every object in `text`; `file` is used in diagnostics only. */
export function parseManifests(text: string, file?: string, options: ValidationOptions = {}): ParseResult {
  // One JSON object (an API object as the Kubernetes source hands it over): JSON.parse, not the YAML parser, which
  // takes milliseconds per object (10,000 policies); an API object has no lines to point at. Other JSON goes on as YAML.
  if (text.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (value !== undefined && !isListObject(value)) {
      const result = validateObject(value, { ...(file !== undefined ? { file } : {}), document: 1, prefix: [] }, options);
      return {
        objects: result.object ? [result.object] : [],
        diagnostics: result.diagnostics,
        ok: !result.diagnostics.some((d) => d.severity === 'error'),
      };
    }
  }
  const counter = new LineCounter();
  const documents = parseAllDocuments(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const diagnostics: PolicyDiagnostic[] = [];
  const objects: AcceptedObject[] = [];
  const seen = new Map<string, number>();
  // An input of only comments or whitespace yields an empty stream: no documents, no diagnostics.
  Array.from(documents).forEach((doc, docIndex) => {
    const document = docIndex + 1;
    const where = file !== undefined ? { file, document } : { document };
    if (doc.errors.length > 0) {
      for (const error of doc.errors) {
        const line = counter.linePos(error.pos[0]).line;
        diagnostics.push({
          severity: 'error',
          location: { ...where, line },
          message: `malformed YAML: ${error.message.split('\n')[0] ?? error.code}`,
          fix: 'fix the YAML syntax at this line',
        });
      }
      return;
    }
    // An empty document (a trailing `---`, or only comments) parses as a null scalar.
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return;

    let value: unknown;
    try {
      value = doc.toJS();
    } catch (error) {
      // e.g. an alias bomb exceeding yaml's alias budget
      const reason = error instanceof Error ? error.message : String(error);
      diagnostics.push({
        severity: 'error',
        location: where,
        message: `cannot read the document: ${reason}`,
        fix: 'remove excessive YAML aliases',
      });
      return;
    }
    const locate = (path: PathSegment[], key: boolean): number | undefined => lineOf(doc, counter, path, key);
    const entries: { raw: unknown; source: ObjectSource }[] = [];
    if (isListObject(value) && Array.isArray(value.items)) {
      value.items.forEach((item, index) => entries.push({ raw: item, source: { ...where, prefix: ['items', index], lineOf: locate } }));
    } else {
      entries.push({ raw: value, source: { ...where, prefix: [], lineOf: locate } });
    }

    for (const { raw, source } of entries) {
      const result = validateObject(raw, source, options);
      diagnostics.push(...result.diagnostics);
      if (result.object === null) continue;
      const key = identity(result.object);
      const earlier = seen.get(key);
      if (earlier !== undefined) {
        const line = locate([...source.prefix, 'metadata', 'name'], false);
        diagnostics.push({
          severity: 'error',
          location: {
            ...where,
            ...(line !== undefined ? { line } : {}),
            namespace: result.object.namespace,
            name: result.object.name,
            field: 'metadata.name',
          },
          message: `${key} is already defined in document ${earlier} of this file`,
          fix: 'define each object once, or give this one another name',
        });
        continue;
      }
      seen.set(key, document);
      objects.push(result.object);
    }
  });
  return { objects, diagnostics, ok: !diagnostics.some((d) => d.severity === 'error') };
}

/** Reads and parses one manifest file; an unreadable file is reported as a diagnostic. */
export function parseManifestFile(path: string, options: ValidationOptions = {}): ParseResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return {
      objects: [],
      diagnostics: [
        {
          severity: 'error',
          location: { file: path },
          message: `cannot read the file: ${reason}`,
          fix: 'check the path and its permissions',
        },
      ],
      ok: false,
    };
  }
  return parseManifests(text, path, options);
}
