// openapi.yaml is the contract: this module loads it once, lists its operations for the router,
// compiles ajv validators from its schemas (HTTP bodies and WebSocket messages use the same ones),
// and turns validation failures into messages that name the field by JSON pointer.

import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import { base64Error } from '../../protocol/json/base64';
import { invalidArgument } from '../errors';
import { ShapeBook, type ObjectShape } from './shape';

type Schema = Record<string, unknown>;

export interface Operation {
  operationId: string;
  method: 'get' | 'post' | 'put' | 'delete';
  /** The path as written in the spec, e.g. `/v3/kv/range`. */
  path: string;
  /** Component name of the request body schema, for POST operations. */
  requestSchema?: string;
  /** Component name of the 200 response schema. */
  responseSchema?: string;
  /** `bidi` for operations whose body is a sequence of requests answered by a stream, `server` for one
   *  request answered by a stream (`x-stream`). */
  stream?: string;
  /** Further paths etcd serves the same operation at (`x-aliases`). */
  aliases: string[];
  /** The query parameters it takes (the /v1/ API refuses others). */
  queryParameters: string[];
}

const DOC_ID = 'openapi.json';
const COMPONENT_PREFIX = '#/components/schemas/';

function findSpecFile(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'openapi.yaml');
    if (fs.existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`openapi.yaml not found above ${__dirname}`);
}

function componentName(ref: unknown): string | undefined {
  return typeof ref === 'string' && ref.startsWith(COMPONENT_PREFIX) ? ref.slice(COMPONENT_PREFIX.length) : undefined;
}

function newAjv(allErrors: boolean): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors,
    verbose: true,
    strict: true,
    strictTypes: false,
    allowUnionTypes: true,
    formats: {
      byte: { type: 'string', validate: (s: string) => base64Error(s) === undefined },
      // Range and literal form of 64-bit integers are checked exactly by the codec (lossless).
      int64: true,
      uint64: true,
      uint32: { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff },
    },
  });
  ajv.addKeyword('components');
  return ajv;
}

export class ApiSpec {
  readonly doc: Schema;
  readonly yamlText: string;
  /** etcd's dialect (/v3/) and the gateway's own GET endpoints. */
  readonly operations: Operation[];
  /** The gateway's own plain-HTTP API, under /v1/ (src/api/v1/router.ts serves them). */
  readonly v1Operations: Operation[];
  readonly shapes: ShapeBook;
  private readonly ajv: Ajv2020;
  private diagnosticAjv?: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();
  /** Where each schema object sits in the document, to find the branches of a failed oneOf. */
  private readonly pointers = new WeakMap<object, string>();

  constructor(file = findSpecFile()) {
    this.yamlText = fs.readFileSync(file, 'utf8');
    this.doc = YAML.parse(this.yamlText) as Schema;
    this.shapes = new ShapeBook(this.doc);
    const all = this.listOperations();
    this.operations = all.filter((op) => !op.path.startsWith('/v1/'));
    this.v1Operations = all.filter((op) => op.path.startsWith('/v1/'));
    this.ajv = newAjv(false);
    this.ajv.addSchema({ $id: DOC_ID, components: this.doc.components }, DOC_ID);
    this.indexPointers(this.doc, '#');
    for (const name of Object.keys((this.doc.components as Schema).schemas as Schema)) this.validator(name);
  }

  private listOperations(): Operation[] {
    const ops: Operation[] = [];
    for (const [p, item] of Object.entries(this.doc.paths as Record<string, Schema>)) {
      for (const method of ['get', 'post', 'put', 'delete'] as const) {
        const op = item[method] as Schema | undefined;
        if (!op) continue;
        const body = (op.requestBody as Schema | undefined)?.content as Record<string, Schema> | undefined;
        const ok = ((op.responses as Record<string, Schema>)['200']?.content ?? {}) as Record<string, Schema>;
        ops.push({
          operationId: String(op.operationId),
          method,
          path: p,
          requestSchema: componentName((body?.['application/json']?.schema as Schema | undefined)?.$ref),
          responseSchema: componentName((ok['application/json']?.schema as Schema | undefined)?.$ref),
          stream: typeof op['x-stream'] === 'string' ? op['x-stream'] : undefined,
          aliases: Array.isArray(op['x-aliases']) ? (op['x-aliases'] as string[]) : [],
          queryParameters: [...((item.parameters as Schema[] | undefined) ?? []), ...((op.parameters as Schema[] | undefined) ?? [])]
            .filter((p) => p.in === 'query')
            .map((p) => String(p.name)),
        });
      }
    }
    return ops;
  }

  private indexPointers(node: unknown, at: string): void {
    if (!node || typeof node !== 'object') return;
    this.pointers.set(node, at);
    for (const [k, v] of Object.entries(node)) this.indexPointers(v, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`);
  }

  /** The compiled validator of a component schema. */
  validator(name: string): ValidateFunction {
    let v = this.validators.get(name);
    if (!v) {
      v = this.ajv.getSchema(`${DOC_ID}${COMPONENT_PREFIX}${name}`);
      if (!v) throw new Error(`no schema ${name} in openapi.yaml`);
      this.validators.set(name, v);
    }
    return v;
  }

  requestShape(name: string): ObjectShape {
    return this.shapes.objectComponent(name);
  }

  /** Validates `data` against a component schema; throws a 400 naming the first bad field. */
  check(name: string, data: unknown): void {
    const v = this.validator(name);
    if (!v(data)) throw invalidArgument(this.describe(v.errors ?? [], data));
  }

  private describe(errors: ErrorObject[], root: unknown): string {
    // A failed oneOf is reported after its branches' errors; explain it rather than the noise before it.
    const oneOf = errors.find((e) => e.keyword === 'oneOf');
    if (oneOf) return this.describeOneOf(oneOf);
    return describeError(errors[0], root);
  }

  private describeOneOf(err: ErrorObject): string {
    const where = err.instancePath || '(body)';
    const branches = err.schema as Schema[];
    const owner = this.pointers.get(err.parentSchema as object);
    if ((err.params as { passingSchemas?: unknown }).passingSchemas) {
      return `${where}: matches more than one of ${branches.map((b, i) => this.title(b, i)).join(', ')}`;
    }
    this.diagnosticAjv ??= (() => {
      const ajv = newAjv(true);
      ajv.addSchema({ $id: DOC_ID, components: this.doc.components }, DOC_ID);
      return ajv;
    })();
    const perBranch = branches.map((b, i) => {
      const ref = typeof b.$ref === 'string' ? b.$ref : `${owner}/oneOf/${i}`;
      const v = this.diagnosticAjv!.getSchema(`${DOC_ID}${ref}`)!;
      v(err.data);
      return (v.errors ?? []).map((e) => ({ ...e, instancePath: err.instancePath + e.instancePath }));
    });
    // An error every branch reports alike (a target that is no target at all) is the real problem.
    const first = perBranch[0];
    const common = first?.find((e) =>
      perBranch.every((errs) => errs.some((o) => o.instancePath === e.instancePath && o.message === e.message && sameParams(o, e))),
    );
    if (common) return describeError(common, undefined);
    // Branches whose selecting field is missing or different cannot be what the client meant.
    const candidates = perBranch
      .map((errs, i) => ({ errs, i }))
      .filter(({ errs }) => !errs.some((e) => selectsAnotherBranch(e, err.instancePath)));
    if (candidates.length === 1) {
      const { errs, i } = candidates[0];
      return `${describeError(errs[0], undefined)} (checked as a ${this.title(branches[i], i)})`;
    }
    return `${where}: must be exactly one of: ${branches.map((b, i) => this.title(b, i)).join('; ')}`;
  }

  private title(branch: Schema, i: number): string {
    const target = typeof branch.$ref === 'string' ? (this.resolve(branch.$ref) ?? branch) : branch;
    if (typeof target.title === 'string') return target.title;
    return `form ${i + 1}`;
  }

  private resolve(ref: string): Schema | undefined {
    const name = componentName(ref);
    return name ? ((this.doc.components as Schema).schemas as Record<string, Schema>)[name] : undefined;
  }
}

function sameParams(a: ErrorObject, b: ErrorObject): boolean {
  return JSON.stringify(a.params) === JSON.stringify(b.params);
}

function selectsAnotherBranch(e: ErrorObject, base: string): boolean {
  if (e.keyword === 'required' && e.instancePath === base) return true;
  const child = e.instancePath.startsWith(base + '/') && !e.instancePath.slice(base.length + 1).includes('/');
  return child && (e.keyword === 'enum' || e.keyword === 'const');
}

/** What a newcomer who sent text where base64 goes needs to hear: the base64 of that text, and where
 *  raw keys are taken. Left out for long strings (no one types those by hand). */
function base64Hint(text: string): string {
  if (text.length === 0 || text.length > 64) return '';
  return ` (bytes are base64 in /v3/: the text ${JSON.stringify(text)} is ${JSON.stringify(Buffer.from(text, 'utf8').toString('base64'))}; the /v1/ API takes raw keys and values)`;
}

function describeError(e: ErrorObject, _root: unknown): string {
  const where = e.instancePath || '(body)';
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${e.instancePath}/${String(p.additionalProperty)}: unknown field`;
    case 'required':
      return `${where}: missing required field ${String(p.missingProperty)}`;
    case 'format':
      if (p.format === 'byte') return `${where}: ${base64Error(String(e.data)) ?? 'invalid base64'}${base64Hint(String(e.data))}`;
      return `${where}: must be a valid ${String(p.format)}`;
    case 'enum':
      return `${where}: must be one of ${(p.allowedValues as unknown[]).map((v) => String(v)).join(', ')}`;
    case 'type': {
      const got = e.data === null ? 'null' : Array.isArray(e.data) ? 'array' : typeof e.data;
      return `${where}: must be ${String(p.type).replace(',', ' or ')}, got ${got}`;
    }
    case 'pattern':
      return `${where}: must be a decimal integer`;
    default:
      return `${where}: ${e.message ?? 'is invalid'}`;
  }
}
