// The etcd users several suites sign in as: root, and alice who may only read keys under pub/.

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** /v3/ calls (path, body) that add root and alice (role "reader": read on pub/), then enable etcd's auth. */
export const ROOT_AND_PUB_READER: ReadonlyArray<[string, object]> = [
  ['/v3/auth/user/add', { name: 'root', password: 'rootpw' }],
  ['/v3/auth/role/add', { name: 'root' }],
  ['/v3/auth/user/grant', { user: 'root', role: 'root' }],
  ['/v3/auth/user/add', { name: 'alice', password: 'alicepw' }],
  ['/v3/auth/role/add', { name: 'reader' }],
  ['/v3/auth/role/grant', { name: 'reader', perm: { permType: 'READ', key: b64('pub/'), range_end: b64('pub0') } }],
  ['/v3/auth/user/grant', { user: 'alice', role: 'reader' }],
  ['/v3/auth/enable', {}],
];
