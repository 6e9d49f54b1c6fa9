import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The import graph is one-way: model ← policy/identity/dns/events ← datapath ← agent (the only importer of everything).
// One block per layer names what it may not import; `types` groups allow `import type` (a type carries no code).
const restrictImports = (...patterns) => ({ '@typescript-eslint/no-restricted-imports': ['error', { patterns }] });
const anyFileIn = (layers) => layers.map((layer) => `**/${layer}/**`);
const middleLayers = ['policy', 'identity', 'dns', 'events'];
const outerLayers = ['datapath', 'agent', 'cli', 'lab', 'sinks', 'sources', 'k8s', 'metrics', 'discover'];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'native/build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The lab (lab/: namespaces, probes, the demo) is test and demo tooling: production code never imports it; the CLI
    // loads the demo by path at run time. The typescript-eslint variant of the rule keeps this block independent of any
    // other block that configures the core no-restricted-imports rule (a later block would replace its options).
    files: ['src/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: [{ regex: '(^|/)lab(/|$)', message: 'src/ must not import the lab (lab/): it is test and demo tooling.' }] },
      ],
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    files: ['src/model/**/*.ts'],
    rules: restrictImports({ group: ['../**', '!../model/**'], message: 'src/model is the leaf vocabulary: it imports nothing from src.' }),
  },
  ...middleLayers.map((layer) => ({
    files: [`src/${layer}/**/*.ts`],
    rules: restrictImports(
      {
        group: anyFileIn(middleLayers.filter((other) => other !== layer)),
        allowTypeImports: true,
        message: `src/${layer} imports only src/model and itself; use \`import type\` for another layer's types.`,
      },
      { group: anyFileIn(outerLayers), message: `src/${layer} must not import an outer layer (datapath, agent, ...).` },
    ),
  })),
  {
    files: ['src/datapath/**/*.ts'],
    rules: restrictImports(
      { group: anyFileIn(['policy']), allowTypeImports: true, message: 'src/datapath imports policy types only (`import type`).' },
      {
        group: anyFileIn(['dns', 'identity', 'events', ...outerLayers.filter((layer) => layer !== 'datapath')]),
        message: 'src/datapath imports src/model and policy types only; the agent wires it to the rest.',
      },
    ),
  },
);
