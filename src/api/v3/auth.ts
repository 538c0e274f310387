// Auth service: enabling auth, tokens, users and roles.

import { forward, type UnaryHandler } from '../../core/context';

const write = { idempotent: false };
const read = { idempotent: true };

export const authHandlers: Record<string, UnaryHandler> = {
  Auth_AuthEnable: forward('Auth', 'AuthEnable', write),
  Auth_AuthDisable: forward('Auth', 'AuthDisable', write),
  Auth_Authenticate: forward('Auth', 'Authenticate', write),
  Auth_UserAdd: forward('Auth', 'UserAdd', write),
  Auth_UserGet: forward('Auth', 'UserGet', read),
  Auth_UserList: forward('Auth', 'UserList', read),
  Auth_UserDelete: forward('Auth', 'UserDelete', write),
  Auth_UserChangePassword: forward('Auth', 'UserChangePassword', write),
  Auth_UserGrantRole: forward('Auth', 'UserGrantRole', write),
  Auth_UserRevokeRole: forward('Auth', 'UserRevokeRole', write),
  Auth_RoleAdd: forward('Auth', 'RoleAdd', write),
  Auth_RoleGet: forward('Auth', 'RoleGet', read),
  Auth_RoleList: forward('Auth', 'RoleList', read),
  Auth_RoleDelete: forward('Auth', 'RoleDelete', write),
  Auth_RoleGrantPermission: forward('Auth', 'RoleGrantPermission', write),
  Auth_RoleRevokePermission: forward('Auth', 'RoleRevokePermission', write),
};
