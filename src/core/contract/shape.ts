// Shapes are the codec's view of the OpenAPI schemas: what each JSON field is on the wire (base64 bytes,
// a 64-bit integer, an enum by name...). They are derived once, at start-up, from the same schemas ajv
// validates with, so the contract, the validator and the codec cannot drift apart.

export type Shape =
  | { kind: 'bytes' }
  | { kind: 'int64'; unsigned: boolean }
  | { kind: 'number' }
  | { kind: 'bool' }
  | { kind: 'string' }
  | EnumShape
  | { kind: 'array'; items: Shape }
  | ObjectShape
  | { kind: 'any' };

export interface EnumShape {
  kind: 'enum';
  /** etcd's names; a name's index is its number (etcd's enums are contiguous from 0). */
  names: string[];
  /** Name → number, keyed by the name without underscores, upper-case: the etcd3 client spells
   *  etcd's NOT_EQUAL as NotEqual, and both reduce to NOTEQUAL. */
  byLooseName: Map<string, number>;
}

export interface Field {
  name: string;
  /** The lowerCamelCase alias grpc-gateway accepts on input (`range_end` → `rangeEnd`), if different. */
  alias?: string;
  shape: Shape;
}

export interface ObjectShape {
  kind: 'object';
  name: string;
  fields: Field[];
  byName: Map<string, Field>;
  byAlias: Map<string, Field>;
}

type Schema = Record<string, unknown>;

export function looseEnumName(name: string): string {
  return name.replace(/_/g, '').toUpperCase();
}

export function camelAlias(name: string): string | undefined {
  if (!name.includes('_')) return undefined;
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** Resolves `#/components/schemas/...` references of one OpenAPI document into shapes. */
export class ShapeBook {
  private readonly byRef = new Map<string, Shape>();

  constructor(private readonly doc: Schema) {}

  /** The shape of a named component schema, e.g. `RangeRequest`. */
  component(name: string): Shape {
    return this.ref(`#/components/schemas/${name}`);
  }

  objectComponent(name: string): ObjectShape {
    const shape = this.component(name);
    if (shape.kind !== 'object') throw new Error(`schema ${name} is not an object`);
    return shape;
  }

  private ref(ref: string): Shape {
    const known = this.byRef.get(ref);
    if (known) return known;
    const schema = this.lookup(ref);
    const name = ref.slice(ref.lastIndexOf('/') + 1);
    if (this.isObjectLike(schema)) {
      // Registered before its fields are built, so recursive schemas (a txn inside a txn) resolve.
      const shape: ObjectShape = { kind: 'object', name, fields: [], byName: new Map(), byAlias: new Map() };
      this.byRef.set(ref, shape);
      this.fillObject(shape, schema);
      return shape;
    }
    const shape = this.of(schema, name);
    this.byRef.set(ref, shape);
    return shape;
  }

  private lookup(ref: string): Schema {
    if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
    let node: unknown = this.doc;
    for (const part of ref.slice(2).split('/')) {
      node = (node as Schema | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    }
    if (!node || typeof node !== 'object') throw new Error(`unresolved $ref ${ref}`);
    return node as Schema;
  }

  private isObjectLike(schema: Schema): boolean {
    return schema.type === 'object' || 'properties' in schema || (Array.isArray(schema.oneOf) && !('type' in schema));
  }

  private of(schema: Schema, name: string): Shape {
    if (typeof schema.$ref === 'string') return this.ref(schema.$ref);
    if (this.isObjectLike(schema)) {
      const shape: ObjectShape = { kind: 'object', name, fields: [], byName: new Map(), byAlias: new Map() };
      this.fillObject(shape, schema);
      return shape;
    }
    if (Array.isArray(schema.enum)) {
      const names = schema.enum.filter((v): v is string => typeof v === 'string');
      return { kind: 'enum', names, byLooseName: new Map(names.map((n, i) => [looseEnumName(n), i])) };
    }
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (types.includes('array')) return { kind: 'array', items: this.of(schema.items as Schema, `${name}[]`) };
    switch (schema.format) {
      case 'byte':
        return { kind: 'bytes' };
      case 'int64':
        return { kind: 'int64', unsigned: false };
      case 'uint64':
        return { kind: 'int64', unsigned: true };
    }
    if (types.includes('integer') || types.includes('number')) return { kind: 'number' };
    if (types.includes('boolean')) return { kind: 'bool' };
    if (types.includes('string')) return { kind: 'string' };
    return { kind: 'any' };
  }

  /** Fields of an object schema; the branches of a `oneOf` contribute their fields in order (the first
   *  declaration of a name wins), because validation has already decided which branch applies. */
  private fillObject(shape: ObjectShape, schema: Schema): void {
    const add = (name: string, sub: Schema): void => {
      if (shape.byName.has(name)) return;
      const field: Field = { name, alias: camelAlias(name), shape: this.of(sub, name) };
      shape.fields.push(field);
      shape.byName.set(name, field);
      if (field.alias) shape.byAlias.set(field.alias, field);
    };
    const visit = (s: Schema): void => {
      const target = typeof s.$ref === 'string' ? this.lookup(s.$ref) : s;
      for (const [name, sub] of Object.entries((target.properties ?? {}) as Record<string, Schema>)) add(name, sub);
      if (Array.isArray(target.oneOf)) for (const branch of target.oneOf as Schema[]) visit(branch);
    };
    visit(schema);
  }
}
