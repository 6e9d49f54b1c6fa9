// The set of accepted policies with last-good semantics: a file with any error changes nothing, and its previously
// accepted objects stay in force until a valid version of the file (or its removal) replaces them.
import { compilePolicy } from './compile.js';
import { hostModeResolver, type DestinationResolver } from './destination-resolver.js';
import { formatDiagnostic } from './diagnostics.js';
import { parseManifests } from './parse.js';
import type { PolicyDiagnostic } from './types.js';
import type { AcceptedObject, ValidatedPolicy, ValidationOptions } from './validate.js';

/** An accepted FirewallPolicy with where it came from and its findings, for status and logs. */
export interface PolicyEntry {
  policy: ValidatedPolicy;
  file: string;
  /** One-line forms of the policy's warnings (accepted, not enforced), from validation and compilation. */
  warnings: string[];
}

/** An object by identity: what the change journal names. */
export type ObjectRef = Pick<AcceptedObject, 'kind' | 'namespace' | 'name'>;

function objectKey(object: ObjectRef): string {
  return `${object.kind}/${object.namespace}/${object.name}`;
}

/** JSON with sorted keys, so that two specs compare equal whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** True when a rule selects by `selector.service` (its findings depend on the Service as the resolver sees it now). */
function namesService(object: AcceptedObject): boolean {
  return object.kind === 'FirewallPolicy' && object.rules.some((rule) => 'service' in rule.selector);
}

export class PolicyStore {
  private readonly byKey = new Map<string, AcceptedObject>();
  private readonly keysByFile = new Map<string, string[]>();
  private readonly fileByKey = new Map<string, string>();
  /** Last generation handed out per object, kept after removal so a re-added object never reuses one. */
  private readonly generations = new Map<string, { generation: number; spec: string }>();

  private revisionCounter = 0;
  /**
   * The change journal: every object added, given a new spec, moved or removed, with the revision that did it, oldest
   * first. Readers ask for what changed since the revision they last read (changesSince), so a change costs its own
   * objects, not the whole set. It holds every change after `journalFloor`; older entries are dropped once it outgrows
   * the set, and a reader that far behind reads the set again.
   */
  private journal: { revision: number; object: ObjectRef }[] = [];
  /**
   * The compiler's findings per accepted FirewallPolicy, kept from its acceptance: status reads them on every call (the
   * readiness probe's too), which must not compile 10,000 policies again. Not kept for a policy naming a Service: what
   * the resolver says about a Service can change while the policy does not.
   */
  private readonly findings = new Map<string, PolicyDiagnostic[]>();
  private journalFloor = 0;

  /** `resolver` decides which selectors are enforceable, for the warnings applyFile and entries() report. */
  constructor(
    private readonly options: ValidationOptions = {},
    private readonly resolver: DestinationResolver = hostModeResolver,
  ) {}

  /** Increments whenever the accepted set changes (objects added, removed, or given a new spec): recompile when it moves. */
  get revision(): number {
    return this.revisionCounter;
  }

  /**
   * The objects added, changed (new spec, other file) or removed after `revision` (a `revision` read earlier), each
   * once, in no particular order; look each up to see what it is now. Null when the journal no longer reaches back
   * that far, or for a null `revision` (a first read): then read the whole set.
   */
  changesSince(revision: number | null): ObjectRef[] | null {
    if (revision === null || revision < this.journalFloor) return null;
    let first = this.journal.length;
    while (first > 0 && this.journal[first - 1]!.revision > revision) first--;
    const changed = new Map<string, ObjectRef>();
    for (let i = first; i < this.journal.length; i++) changed.set(objectKey(this.journal[i]!.object), this.journal[i]!.object);
    return [...changed.values()];
  }

  /** Notes a change of the transaction under way (it becomes revision + 1). */
  private journalChange(object: ObjectRef): void {
    this.journal.push({
      revision: this.revisionCounter + 1,
      object: { kind: object.kind, namespace: object.namespace, name: object.name },
    });
  }

  /** Drops the older half of the journal once it holds more entries than the set has objects (at least 1,024). */
  private trimJournal(): void {
    if (this.journal.length <= Math.max(1024, this.byKey.size)) return;
    const floor = this.journal[Math.floor(this.journal.length / 2)]!.revision;
    this.journal = this.journal.filter((entry) => entry.revision > floor);
    this.journalFloor = floor;
  }

  /**
   * Validates `text` as the new content of `path` and returns every diagnostic. With any error the file's previous
   * objects stay in force; otherwise its objects replace them (objects no longer in the file are removed).
   */
  applyFile(path: string, text: string): PolicyDiagnostic[] {
    return this.applyFiles(new Map([[path, text]])).get(path) ?? [];
  }

  /** Forgets every object the file defined. Returns true when something was removed. */
  removeFile(path: string): boolean {
    const revision = this.revisionCounter;
    this.applyFiles(new Map([[path, null]]));
    return this.revisionCounter !== revision;
  }

  /**
   * One transaction over several files (a folder change: files renamed, a git checkout, a ConfigMap update): each
   * path maps to its new text, or null when it is gone. The resulting set replaces the current one at once, and
   * "already defined" is judged on that resulting set, so an object moving from a removed file to a new one is
   * accepted and never withdrawn midway. A file with errors keeps its previous objects (last-good); when two files
   * would define one object, the file that changed is rejected (both changed: the later path), naming the other.
   * Returns the diagnostics of every changed file that still exists.
   */
  applyFiles(changes: ReadonlyMap<string, string | null>): Map<string, PolicyDiagnostic[]> {
    const results = new Map<string, PolicyDiagnostic[]>();
    const accepted = new Map<string, AcceptedObject[]>();
    const found = new Map<AcceptedObject, PolicyDiagnostic[]>();
    for (const [path, text] of changes) {
      if (text === null) continue;
      const parsed = parseManifests(text, path, this.options);
      for (const object of parsed.objects) found.set(object, this.compilerFindings(object));
      const diagnostics = [...parsed.diagnostics, ...parsed.objects.flatMap((object) => found.get(object)!)];
      results.set(path, diagnostics);
      if (!diagnostics.some((d) => d.severity === 'error')) accepted.set(path, parsed.objects);
    }
    this.rejectDuplicates(changes, accepted, results);

    // Objects of the accepted files in the set before this change (possibly in another file): they keep a generation
    // when their spec stays.
    const presentBefore = new Set<string>();
    for (const objects of accepted.values())
      for (const object of objects) if (this.byKey.has(objectKey(object))) presentBefore.add(objectKey(object));
    let changed = false;
    for (const [path, text] of changes) {
      if (text !== null && !accepted.has(path)) continue;
      changed = this.dropFile(path, new Set((accepted.get(path) ?? []).map(objectKey))) || changed;
      this.keysByFile.delete(path);
    }
    for (const [path, objects] of accepted) {
      const keys: string[] = [];
      for (const object of objects) {
        const key = objectKey(object);
        const spec = canonical(object.spec);
        const previous = this.generations.get(key);
        // Same spec, still defined somewhere before this change (possibly in another file): same generation.
        const unchanged = previous !== undefined && presentBefore.has(key) && previous.spec === spec;
        const generation = previous === undefined ? 1 : unchanged ? previous.generation : previous.generation + 1;
        if (!unchanged || !this.byKey.has(key)) {
          changed = true;
          this.journalChange(object);
        }
        this.generations.set(key, { generation, spec });
        this.byKey.set(key, { ...object, generation });
        this.fileByKey.set(key, path);
        if (namesService(object)) this.findings.delete(key);
        else this.findings.set(key, found.get(object)!);
        keys.push(key);
      }
      this.keysByFile.set(path, keys);
    }
    if (changed) {
      this.revisionCounter++;
      this.trimJournal();
    }
    return results;
  }

  /**
   * Rejects (removes from `accepted`) changed files that would define an object another file of the resulting set
   * defines. Repeats until stable: a rejected file keeps its previous objects, which may clash in turn. Only objects of
   * accepted files can clash (the set holds each object once), so this costs the change, not the set.
   */
  private rejectDuplicates(
    changes: ReadonlyMap<string, string | null>,
    accepted: Map<string, AcceptedObject[]>,
    results: Map<string, PolicyDiagnostic[]>,
  ): void {
    for (;;) {
      const definers = new Map<string, { path: string; object: ObjectRef }[]>();
      for (const path of [...accepted.keys()].sort()) {
        for (const object of accepted.get(path)!) {
          const key = objectKey(object);
          definers.set(key, [...(definers.get(key) ?? []), { path, object }]);
        }
      }
      let rejected = false;
      for (const [key, list] of definers) {
        // The file defining it now keeps it unless that file is removed or replaced (its new objects are listed).
        const holder = this.fileByKey.get(key);
        if (holder !== undefined && !accepted.has(holder) && changes.get(holder) !== null) {
          list.push({ path: holder, object: this.byKey.get(key)! });
          list.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
        }
        if (list.length < 2) continue;
        const keeper = list.find((d) => !accepted.has(d.path)) ?? list[0]!;
        for (const { path, object } of list) {
          if (path === keeper.path || !accepted.has(path)) continue;
          accepted.delete(path);
          rejected = true;
          const source = 'source' in object ? (object as AcceptedObject).source : undefined;
          results.get(path)!.push({
            severity: 'error',
            location: { file: path, document: source?.document, namespace: object.namespace, name: object.name, field: 'metadata.name' },
            message: `${object.kind} ${object.namespace}/${object.name} is already defined in ${keeper.path}`,
            fix: 'define each object in one file only, or rename one of them',
          });
        }
      }
      if (!rejected) return;
    }
  }

  /** Removes the file's objects except those in `keep` (which are about to be replaced). */
  private dropFile(path: string, keep: ReadonlySet<string>): boolean {
    let changed = false;
    for (const key of this.keysByFile.get(path) ?? []) {
      if (keep.has(key)) continue;
      this.journalChange(this.byKey.get(key)!);
      this.byKey.delete(key);
      this.fileByKey.delete(key);
      this.findings.delete(key);
      changed = true;
    }
    return changed;
  }

  /** Accepted FirewallPolicies (the enforced kind), in (namespace, name) order. */
  policies(): ValidatedPolicy[] {
    return [...this.byKey.values()]
      .filter((object): object is ValidatedPolicy => object.kind === 'FirewallPolicy')
      .sort((a, b) => (objectKey(a) < objectKey(b) ? -1 : objectKey(a) > objectKey(b) ? 1 : 0));
  }

  /** Every accepted object, including WebgroupPolicies (validated, not enforced). */
  objects(): AcceptedObject[] {
    return [...this.byKey.values()];
  }

  get(namespace: string, name: string): ValidatedPolicy | undefined {
    const object = this.byKey.get(objectKey({ kind: 'FirewallPolicy', namespace, name }));
    return object?.kind === 'FirewallPolicy' ? object : undefined;
  }

  /** Accepted FirewallPolicies with their file and warnings, in (namespace, name) order. */
  entries(): PolicyEntry[] {
    return this.policies().map((policy) => ({
      policy,
      file: this.fileByKey.get(objectKey(policy)) ?? '',
      warnings: [...policy.warnings, ...(this.findings.get(objectKey(policy)) ?? this.compilerFindings(policy))].map(formatDiagnostic),
    }));
  }

  /** What the compiler reports about a FirewallPolicy with this store's resolver (parts not enforced). */
  private compilerFindings(object: AcceptedObject): PolicyDiagnostic[] {
    return object.kind === 'FirewallPolicy' ? compilePolicy(object, this.resolver).diagnostics : [];
  }

  /** Files whose objects are currently in force. */
  files(): string[] {
    return [...this.keysByFile.keys()];
  }
}
