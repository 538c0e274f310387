// Packaging checks that run without Docker or Helm: the Helm chart's templates, values and schema
// agree with one another; the Dockerfile has the shape a runtime image needs; and the image's start
// command and HEALTHCHECK, run here as the image would run them, bring up a gateway against a real
// etcd, report it healthy and stop it promptly on SIGTERM.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import Ajv, { type ValidateFunction } from 'ajv';
import YAML from 'yaml';
import { usage } from '../../src/config/settings';
import { startTestEtcd, type TestEtcd } from '../support/etcd';

// ---------------------------------------------------------------------------------------------
// Locations

/** The project root: the nearest directory above this file (source or compiled) with a Dockerfile. */
function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'Dockerfile')) && existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`no Dockerfile + package.json above ${__dirname}`);
}

const ROOT = projectRoot();
const CHART_DIR = path.join(ROOT, 'helm', 'etcd-json-gateway');
const TEMPLATES_DIR = path.join(CHART_DIR, 'templates');

const read = (file: string): string => readFileSync(file, 'utf8');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses YAML, failing on any error or warning (duplicate keys included). */
function parseYamlStrict(text: string, what: string): Json {
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  assert.deepEqual(
    [...doc.errors, ...doc.warnings].map((e) => e.message),
    [],
    `${what} is not clean YAML`,
  );
  return doc.toJS() as Json;
}

function loadValues(): JsonObject {
  const values = parseYamlStrict(read(path.join(CHART_DIR, 'values.yaml')), 'values.yaml');
  assert.ok(isObject(values), 'values.yaml must be a mapping');
  return values;
}

function getPath(obj: Json, segments: string[]): { found: boolean; value?: Json } {
  let cur: Json = obj;
  for (const seg of segments) {
    if (!isObject(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return { found: false };
    cur = cur[seg];
  }
  return { found: true, value: cur };
}

function templateFiles(): string[] {
  return readdirSync(TEMPLATES_DIR).sort();
}

// ---------------------------------------------------------------------------------------------
// Helm chart

const REQUIRED_TEMPLATES = [
  '_helpers.tpl',
  'NOTES.txt',
  'configmap.yaml',
  'deployment.yaml',
  'service.yaml',
  'ingress.yaml',
  'hpa.yaml',
  'pdb.yaml',
  'servicemonitor.yaml',
  'networkpolicy.yaml',
];

/** Kind of the one resource each manifest template produces. */
const TEMPLATE_KINDS: Record<string, string> = {
  'configmap.yaml': 'ConfigMap',
  'deployment.yaml': 'Deployment',
  'service.yaml': 'Service',
  'ingress.yaml': 'Ingress',
  'hpa.yaml': 'HorizontalPodAutoscaler',
  'pdb.yaml': 'PodDisruptionBudget',
  'servicemonitor.yaml': 'ServiceMonitor',
  'networkpolicy.yaml': 'NetworkPolicy',
};

/** Optional templates, each wholly behind `<values key>.enabled`, which is false by default. */
const OPTIONAL_TEMPLATES: Record<string, string> = {
  'ingress.yaml': 'ingress',
  'hpa.yaml': 'autoscaling',
  'pdb.yaml': 'podDisruptionBudget',
  'servicemonitor.yaml': 'serviceMonitor',
  'networkpolicy.yaml': 'networkPolicy',
};

/** Every direct `.Values.a.b.c` reference in a template (also `$.Values...`), as path segments. */
function valuesReferences(text: string): string[][] {
  const refs: string[][] = [];
  for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
    refs.push(m[1].slice(1).split('.'));
  }
  return refs;
}

const PLACEHOLDER = 'HELM_TEMPLATE_VALUE';

/** Best-effort YAML view of a template: template comments removed, lines holding nothing but actions
 *  dropped, every other action replaced by a plain scalar. */
function stripActions(text: string): string {
  const withoutComments = text.replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, '');
  const lines: string[] = [];
  for (const line of withoutComments.split('\n')) {
    if (/^\s*(\{\{.*?\}\}\s*)+$/.test(line)) continue;
    lines.push(line.replace(/\{\{.*?\}\}/g, PLACEHOLDER));
  }
  return lines.join('\n');
}

function stripAndParse(file: string): JsonObject[] {
  const text = stripActions(read(path.join(TEMPLATES_DIR, file)));
  const docs = YAML.parseAllDocuments(text);
  assert.ok(Array.isArray(docs), `${file}: expected YAML documents`);
  const out: JsonObject[] = [];
  for (const doc of docs) {
    assert.deepEqual(
      doc.errors.map((e) => e.message),
      [],
      `${file} (actions replaced by ${PLACEHOLDER}) is not valid YAML:\n${text}`,
    );
    const js = doc.toJS() as Json;
    if (js === null) continue;
    assert.ok(isObject(js), `${file}: each document must be a mapping`);
    out.push(js);
  }
  return out;
}

function compileSchema(): ValidateFunction {
  const schema = JSON.parse(read(path.join(CHART_DIR, 'values.schema.json'))) as JsonObject;
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#', 'values.schema.json: draft-07 (what every Helm 3 validates)');
  // strict: unknown keywords or malformed schema parts are errors, not silently ignored.
  const ajv = new Ajv({ strict: true, allErrors: true });
  return ajv.compile(schema);
}

const ENDPOINTS = 'http://etcd-0.etcd:2379,http://etcd-1.etcd:2379';

function withEndpoints(values: JsonObject, endpoints: string): JsonObject {
  const copy = structuredClone(values);
  (copy.etcd as JsonObject).endpoints = endpoints;
  return copy;
}

describe('helm chart', () => {
  it('has the expected files', () => {
    for (const f of ['Chart.yaml', 'values.yaml', 'values.schema.json']) {
      assert.ok(existsSync(path.join(CHART_DIR, f)), `missing ${f}`);
    }
    const present = new Set(templateFiles());
    for (const f of REQUIRED_TEMPLATES) assert.ok(present.has(f), `missing templates/${f}`);
  });

  it('(a) every .Values path a template references exists in values.yaml', () => {
    const values = loadValues();
    const missing: string[] = [];
    let count = 0;
    for (const file of templateFiles()) {
      for (const ref of valuesReferences(read(path.join(TEMPLATES_DIR, file)))) {
        count++;
        if (!getPath(values, ref).found) missing.push(`${file}: .Values.${ref.join('.')}`);
      }
    }
    assert.ok(count >= 20, `found only ${count} .Values references; is the scan broken?`);
    assert.deepEqual([...new Set(missing)], [], 'referenced in templates but not defined in values.yaml');
  });

  it('(b) Chart.yaml parses and matches the package', () => {
    const chart = parseYamlStrict(read(path.join(CHART_DIR, 'Chart.yaml')), 'Chart.yaml');
    assert.ok(isObject(chart));
    const pkg = JSON.parse(read(path.join(ROOT, 'package.json'))) as { name: string; version: string };
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.name, path.basename(CHART_DIR), 'chart name = its directory name');
    assert.equal(chart.name, pkg.name);
    assert.equal(chart.type, 'application');
    assert.match(String(chart.version), /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, 'chart version must be SemVer 2');
    // The image tag defaults to appVersion, so it must name the version this source builds.
    assert.equal(chart.appVersion, pkg.version, 'Chart.yaml appVersion = package.json version');
  });

  it('(b) values.yaml validates against values.schema.json once etcd.endpoints is given', () => {
    const validate = compileSchema();
    const values = loadValues();
    const ok = validate(withEndpoints(values, ENDPOINTS));
    assert.ok(ok, `values.yaml + etcd.endpoints rejected: ${JSON.stringify(validate.errors, null, 2)}`);
  });

  it('(b) etcd.endpoints is required: the bare defaults fail on it and nothing else', () => {
    const validate = compileSchema();
    const values = loadValues();
    assert.equal(getPath(values, ['etcd', 'endpoints']).value, '', 'the default stays empty: no guessing where etcd is');
    assert.equal(validate(values), false, 'values.yaml without etcd.endpoints must not validate');
    const errors = validate.errors ?? [];
    assert.deepEqual([...new Set(errors.map((e) => e.instancePath))], ['/etcd/endpoints']);
    assert.ok(errors.some((e) => e.keyword === 'minLength'), 'minLength 1 on etcd.endpoints');
    // The templates refuse to render without it too (for installs that skip schema validation).
    assert.match(read(path.join(TEMPLATES_DIR, 'configmap.yaml')), /required\s+"[^"]+"\s+\.Values\.etcd\.endpoints/);
  });

  it('(b) the schema accepts etcd URL lists and rejects what the gateway would reject', () => {
    const validate = compileSchema();
    const values = loadValues();
    for (const good of ['http://etcd:2379', 'https://a:2379, https://b:2379', 'http://[::1]:2379', 'http://10.0.0.1:2379/']) {
      assert.ok(validate(withEndpoints(values, good)), `should accept ${good}: ${JSON.stringify(validate.errors)}`);
    }
    for (const bad of ['etcd:2379', 'http://etcd', 'tcp://etcd:2379', 'http://a:2379,', ' ']) {
      assert.equal(validate(withEndpoints(values, bad)), false, `should reject ${JSON.stringify(bad)}`);
    }
    const typo = withEndpoints(values, ENDPOINTS);
    (typo.config as JsonObject).logLevl = 'debug';
    assert.equal(validate(typo), false, 'a misspelt key is rejected');
    const badLevel = withEndpoints(values, ENDPOINTS);
    (badLevel.config as JsonObject).logLevel = 'verbose';
    assert.equal(validate(badLevel), false, 'LOG_LEVEL outside the gateway\'s list is rejected');
  });

  it('values.yaml defaults: hardened pod, /healthz and /readyz probes, optional features off', () => {
    const v = loadValues();
    const at = (p: string): Json | undefined => getPath(v, p.split('.')).value;
    assert.equal(at('podSecurityContext.runAsNonRoot'), true);
    assert.equal(at('podSecurityContext.runAsUser'), 1000);
    assert.equal(at('podSecurityContext.seccompProfile.type'), 'RuntimeDefault');
    assert.equal(at('securityContext.runAsNonRoot'), true);
    assert.equal(at('securityContext.runAsUser'), 1000);
    assert.equal(at('securityContext.readOnlyRootFilesystem'), true);
    assert.equal(at('securityContext.allowPrivilegeEscalation'), false);
    assert.deepEqual(at('securityContext.capabilities.drop'), ['ALL']);
    assert.equal(at('securityContext.seccompProfile.type'), 'RuntimeDefault');
    assert.equal(at('probes.liveness.path'), '/healthz');
    assert.equal(at('probes.readiness.path'), '/readyz');
    assert.equal(at('config.host'), '0.0.0.0', 'a pod must listen on all interfaces');
    assert.equal(at('serviceMonitor.path'), '/metrics');
    for (const [file, key] of Object.entries(OPTIONAL_TEMPLATES)) {
      assert.equal(at(`${key}.enabled`), false, `${key}.enabled defaults to false`);
      const text = read(path.join(TEMPLATES_DIR, file));
      assert.match(text, new RegExp(`\\{\\{-?\\s*if\\s+\\.Values\\.${key}\\.enabled\\s*-?\\}\\}`), `${file} is gated on ${key}.enabled`);
    }
  });

  it('(c) each manifest template is still YAML with its actions replaced', () => {
    for (const file of templateFiles()) {
      if (file === '_helpers.tpl' || file === 'NOTES.txt') continue;
      const docs = stripAndParse(file);
      assert.equal(docs.length, 1, `${file}: one resource`);
      const [doc] = docs;
      assert.equal(typeof doc.apiVersion, 'string', `${file}: apiVersion`);
      if (TEMPLATE_KINDS[file]) assert.equal(doc.kind, TEMPLATE_KINDS[file], `${file}: kind`);
      assert.ok(isObject(doc.metadata) && 'name' in doc.metadata, `${file}: metadata.name`);
    }
  });

  it('(c) the ConfigMap carries exactly the gateway settings', () => {
    const [cm] = stripAndParse('configmap.yaml');
    assert.ok(isObject(cm.data));
    assert.deepEqual(Object.keys(cm.data).sort(), [
      'ETCD_ENDPOINTS',
      'HEADERS_TIMEOUT_MS',
      'HOST',
      'HTTP_FAST_LANE',
      'KEEPALIVE_TIMEOUT_MS',
      'LOG_LEVEL',
      'MAX_BODY_BYTES',
      'MAX_KEEPALIVES_PER_CLIENT',
      'MAX_STREAMS_PER_CLIENT',
      'MAX_WATCHES_PER_CLIENT',
      'PORT',
      'REQUEST_READ_TIMEOUT_MS',
      'REQUEST_TIMEOUT_MS',
      'UI',
      'WATCH_HEARTBEAT_MS',
      'WORKERS',
    ]);
    // Each is a setting the gateway reads.
    for (const name of Object.keys(cm.data)) assert.match(usage(), new RegExp(`\\b${name}\\b`), `${name} is a gateway setting`);
  });

  it('(c) the Deployment: env from the ConfigMap, probes and /tmp on the http port', () => {
    const [dep] = stripAndParse('deployment.yaml');
    const pod = getPath(dep, ['spec', 'template', 'spec']).value;
    assert.ok(isObject(pod) && Array.isArray(pod.containers) && isObject(pod.containers[0]));
    const c = pod.containers[0];
    assert.ok(Array.isArray(c.envFrom) && isObject(c.envFrom[0]) && 'configMapRef' in c.envFrom[0], 'envFrom configMapRef');
    // Rendered from values by toYaml; here only the keys remain.
    assert.ok('securityContext' in c && 'securityContext' in pod, 'pod and container securityContext');
    assert.match(read(path.join(TEMPLATES_DIR, 'deployment.yaml')), /toYaml \.Values\.securityContext /);
    assert.match(read(path.join(TEMPLATES_DIR, 'deployment.yaml')), /toYaml \.Values\.podSecurityContext /);
    assert.ok(Array.isArray(c.ports) && isObject(c.ports[0]) && c.ports[0].name === 'http');
    for (const probe of ['livenessProbe', 'readinessProbe']) {
      assert.equal(getPath(c, [probe, 'httpGet', 'port']).value, 'http', `${probe} on the http port`);
    }
    assert.ok(Array.isArray(c.volumeMounts) && c.volumeMounts.some((m) => isObject(m) && m.mountPath === '/tmp'), '/tmp mounted');
    assert.ok(
      Array.isArray(pod.volumes) && pod.volumes.some((vol) => isObject(vol) && 'emptyDir' in vol),
      '/tmp is an emptyDir',
    );
    const text = read(path.join(TEMPLATES_DIR, 'deployment.yaml'));
    assert.match(text, /path: \{\{ \.Values\.probes\.liveness\.path \}\}/);
    assert.match(text, /path: \{\{ \.Values\.probes\.readiness\.path \}\}/);
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
}

/** Instructions of a Dockerfile, grouped by stage (a stage starts at FROM; ARGs before it are index 0). */
function parseDockerfile(text: string): { preamble: Instruction[]; stages: Instruction[][] } {
  const instructions: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue; // comments (also inside continuations), parser directives
    if (pending === '' && raw.trim() === '') continue;
    const continued = /\\\s*$/.test(raw);
    pending += continued ? raw.replace(/\\\s*$/, '') : raw;
    if (continued) continue;
    const m = /^\s*([A-Za-z]+)\s*([\s\S]*)$/.exec(pending);
    assert.ok(m, `unparsable Dockerfile line: ${pending}`);
    instructions.push({ keyword: m[1].toUpperCase(), args: m[2].trim() });
    pending = '';
  }
  assert.equal(pending, '', 'Dockerfile ends inside a line continuation');
  const preamble: Instruction[] = [];
  const stages: Instruction[][] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') stages.push([ins]);
    else if (stages.length === 0) preamble.push(ins);
    else stages[stages.length - 1].push(ins);
  }
  return { preamble, stages };
}

/** Words of an instruction's arguments, with double-quoted parts kept together (quotes removed). */
function words(args: string): string[] {
  return [...args.matchAll(/(?:[^\s"]+|"(?:[^"\\]|\\.)*")+/g)].map((m) => m[0].replace(/"((?:[^"\\]|\\.)*)"/g, '$1'));
}

/** The environment a stage's ENV instructions set (both `ENV k=v ...` and legacy `ENV k v`). */
function stageEnv(stage: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of stage.filter((i) => i.keyword === 'ENV')) {
    const parts = words(ins.args);
    if (parts.length > 0 && !parts[0].includes('=')) {
      env[parts[0]] = ins.args.slice(ins.args.indexOf(parts[0]) + parts[0].length).trim();
      continue;
    }
    for (const p of parts) {
      const eq = p.indexOf('=');
      assert.ok(eq > 0, `ENV item without "=": ${p}`);
      env[p.slice(0, eq)] = p.slice(eq + 1);
    }
  }
  return env;
}

interface Healthcheck {
  /** argv to spawn: the exec form as written, or the shell form under /bin/sh -c as Docker runs it. */
  argv: string[];
  /** The command text as written after CMD. */
  command: string;
}

function healthcheckOf(stage: Instruction[]): Healthcheck {
  const hcs = stage.filter((i) => i.keyword === 'HEALTHCHECK');
  assert.equal(hcs.length, 1, 'exactly one HEALTHCHECK in the runtime stage');
  const m = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+([\s\S]+)$/.exec(hcs[0].args);
  assert.ok(m, `HEALTHCHECK must be "[OPTIONS] CMD command", got: ${hcs[0].args}`);
  const command = m[2].trim();
  if (command.startsWith('[')) {
    const argv = JSON.parse(command) as unknown;
    assert.ok(Array.isArray(argv) && argv.every((a) => typeof a === 'string'));
    return { argv, command };
  }
  return { argv: ['/bin/sh', '-c', command], command };
}

function dockerfile(): { preamble: Instruction[]; build: Instruction[]; runtime: Instruction[]; stages: Instruction[][] } {
  const parsed = parseDockerfile(read(path.join(ROOT, 'Dockerfile')));
  assert.ok(parsed.stages.length >= 2, 'multi-stage: a build stage and a runtime stage');
  return { ...parsed, build: parsed.stages[0], runtime: parsed.stages[parsed.stages.length - 1] };
}

/** The runtime stage's CMD, in exec form. */
function imageCmd(runtime: Instruction[]): string[] {
  const cmds = runtime.filter((i) => i.keyword === 'CMD');
  assert.equal(cmds.length, 1, 'exactly one CMD in the runtime stage');
  const cmd = JSON.parse(cmds[0].args) as unknown;
  assert.ok(Array.isArray(cmd) && cmd.every((a) => typeof a === 'string'), 'CMD in exec form (a JSON array), so signals reach node');
  return cmd;
}

describe('Dockerfile', () => {
  it('(d) builds on node:20-bookworm-slim in two stages', () => {
    const { preamble, stages, build } = dockerfile();
    const args: Record<string, string> = {};
    for (const ins of preamble.filter((i) => i.keyword === 'ARG')) {
      const [k, v = ''] = ins.args.split('=');
      args[k.trim()] = v.trim();
    }
    for (const stage of stages) {
      const image = words(stage[0].args)[0].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args[a ?? b] ?? '');
      assert.equal(image, 'node:20-bookworm-slim', `FROM ${stage[0].args}`);
    }
    const run = build.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    assert.ok(run.some((r) => /\bnpm ci\b/.test(r)), 'build stage: npm ci');
    assert.ok(run.some((r) => /\bnpm run build\b/.test(r)), 'build stage: npm run build');
  });

  it('(d) the runtime stage: CMD, non-root USER, EXPOSE, HEALTHCHECK, ENV', () => {
    const { runtime } = dockerfile();
    // The same command as `npm start`, flags included.
    const pkg = JSON.parse(read(path.join(ROOT, 'package.json'))) as { scripts: { start: string } };
    assert.deepEqual(imageCmd(runtime), pkg.scripts.start.split(' '));

    const users = runtime.filter((i) => i.keyword === 'USER');
    assert.ok(users.length > 0, 'the runtime stage sets USER');
    const user = users[users.length - 1].args.split(':')[0];
    assert.notEqual(user, 'root');
    assert.notEqual(user, '0');

    const env = stageEnv(runtime);
    assert.equal(env.NODE_ENV, 'production');
    assert.equal(env.HOST, '0.0.0.0');
    assert.equal(env.PORT, '8080');
    assert.equal(env.ETCD_ENDPOINTS, undefined, 'no baked-in etcd address');

    const exposed = runtime.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => words(i.args));
    assert.ok(exposed.some((p) => p.replace(/\/tcp$/, '') === env.PORT), `EXPOSE ${env.PORT} (got ${exposed.join(' ')})`);

    const hc = healthcheckOf(runtime);
    assert.match(hc.command, /\/healthz\b/);
    assert.doesNotMatch(hc.command, /\b(curl|wget)\b/, 'slim images have neither curl nor wget');

    const run = runtime.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    assert.ok(run.some((r) => /\bnpm ci\b.*--omit=dev/.test(r) && /--ignore-scripts/.test(r)), 'npm ci --omit=dev --ignore-scripts');
  });

  it('(d) the runtime stage copies what the gateway reads at run time, and the context has it', () => {
    const { runtime } = dockerfile();
    const copies = runtime.filter((i) => i.keyword === 'COPY').map((i) => words(i.args));
    const fromBuild = copies.filter((w) => w.some((x) => x.startsWith('--from=')));
    assert.ok(fromBuild.some((w) => w.slice(0, -1).some((src) => /^(\/app\/)?dist\/src\/?$/.test(src))), 'COPY --from=build dist/src');
    const contextSources = copies
      .filter((w) => !w.some((x) => x.startsWith('--from=')))
      .flatMap((w) => w.filter((x) => !x.startsWith('--')).slice(0, -1));
    for (const f of ['openapi.yaml', 'package.json', 'package-lock.json']) {
      assert.ok(contextSources.includes(f), `runtime stage copies ${f}`);
    }
    const ignored = read(path.join(ROOT, '.dockerignore'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const f of ['node_modules', '.git', 'dist', 'data']) assert.ok(ignored.includes(f), `.dockerignore lists ${f}`);
    const allSources = parseDockerfile(read(path.join(ROOT, 'Dockerfile')))
      .stages.flat()
      .filter((i) => i.keyword === 'COPY')
      .map((i) => words(i.args))
      .filter((w) => !w.some((x) => x.startsWith('--from=')))
      .flatMap((w) => w.filter((x) => !x.startsWith('--')).slice(0, -1));
    for (const src of allSources) {
      assert.ok(existsSync(path.join(ROOT, src)), `COPY source ${src} exists`);
      assert.ok(!ignored.includes(src.replace(/\/$/, '')), `COPY source ${src} is not excluded by .dockerignore`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The image's start command, outside a container

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function exited(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Spawns in a process group of its own, so that cleanup also reaches anything it started. */
function spawnGroup(argv: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(argv[0], argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
}

/** SIGKILLs the child's whole process group and lets go of its pipes (which a leftover grandchild
 *  would otherwise hold open, keeping this test process alive). */
async function killGroup(child: ChildProcess): Promise<void> {
  if (child.pid !== undefined) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // group already gone
    }
  }
  await withTimeout(exited(child), 5_000, 'exit after SIGKILL').catch(() => undefined);
  child.stdout?.destroy();
  child.stderr?.destroy();
}

/** Runs a command to completion (killed if it outlives timeoutMs); returns its exit and output. */
async function run(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Exit & { output: string }> {
  const child = spawnGroup(argv, env);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  try {
    const exit = await withTimeout(Promise.race([exited(child), spawnError]), timeoutMs, `${argv.join(' ')}`);
    return { ...exit, output };
  } finally {
    await killGroup(child);
  }
}

/** Resolves once the server answers HTTP on /health (any status); rejects if the process exits first. */
async function waitForHttp(child: ChildProcess, port: number, timeoutMs: number, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`gateway exited early (${child.exitCode ?? child.signalCode}):\n${log()}`);
    }
    try {
      await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1_000) });
      return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway not answering on port ${port} within ${timeoutMs} ms:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the image start command, outside a container', () => {
  it('(e) starts against a real etcd, passes the HEALTHCHECK, and stops within 5 s of SIGTERM', { timeout: 90_000 }, async () => {
    const mainJs = path.join(ROOT, 'dist', 'src', 'main.js');
    assert.ok(existsSync(mainJs), `${mainJs} missing: build first (tsc -p .)`);
    const { runtime } = dockerfile();
    const cmd = imageCmd(runtime);
    const imageEnv = stageEnv(runtime);
    const healthcheck = healthcheckOf(runtime);
    const PATH = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin';

    let etcd: TestEtcd | undefined;
    let gateway: ChildProcess | undefined;
    let log = '';
    try {
      etcd = await withTimeout(startTestEtcd(), 30_000, 'starting etcd');
      const port = await freePort();
      // The image's environment, except: loopback instead of 0.0.0.0 (everything here stays on
      // loopback), a free port instead of 8080, and the etcd a deployment would configure.
      const env = { PATH, ...imageEnv, HOST: '127.0.0.1', PORT: String(port), ETCD_ENDPOINTS: etcd.clientUrl };
      gateway = spawnGroup(cmd, env);
      const spawnError = new Promise<never>((_, reject) => gateway?.once('error', reject));
      spawnError.catch(() => undefined);
      gateway.stdout?.on('data', (d: Buffer) => (log += d.toString()));
      gateway.stderr?.on('data', (d: Buffer) => (log += d.toString()));
      await Promise.race([waitForHttp(gateway, port, 20_000, () => log), spawnError]);

      // The HEALTHCHECK exactly as written in the Dockerfile, with the container's PORT.
      const healthy = await run(healthcheck.argv, { PATH, PORT: String(port) }, 10_000);
      assert.equal(healthy.code, 0, `HEALTHCHECK failed against a healthy gateway: ${healthy.output}\ngateway log:\n${log}`);

      // ...and it is not vacuous: nothing listening means unhealthy.
      const closedPort = await freePort();
      const unhealthy = await run(healthcheck.argv, { PATH, PORT: String(closedPort) }, 10_000);
      assert.notEqual(unhealthy.code, 0, 'HEALTHCHECK must fail when nothing answers');

      const stoppedAt = Date.now();
      gateway.kill('SIGTERM');
      const exit = await withTimeout(exited(gateway), 5_000, 'gateway exit after SIGTERM');
      assert.ok(Date.now() - stoppedAt <= 5_000);
      assert.deepEqual(exit, { code: 0, signal: null }, `gateway exit after SIGTERM; log:\n${log}`);
    } finally {
      if (gateway) await killGroup(gateway);
      await etcd?.cleanup();
    }
  });
});
