// Who am I: the gateway bearer token this tab sends, and the etcd user it is signed in as.

import { useState } from 'preact/hooks';
import { credentials, v3 } from './api';
import { messageOf, type Report } from './widgets';

export function IdentityView(props: { report: Report; onChange(): void }) {
  const [token, setToken] = useState(credentials.gatewayToken());
  const [user, setUser] = useState(credentials.etcdUser());
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const signedIn = credentials.etcdUser();

  const saveToken = (e: Event): void => {
    e.preventDefault();
    credentials.setGatewayToken(token.trim());
    props.report(token.trim() ? 'Gateway token set for this tab.' : 'Gateway token cleared.', 'info');
    props.onChange();
  };
  const signIn = async (e: Event): Promise<void> => {
    e.preventDefault();
    try {
      const answer = await v3<{ token: string }>('auth/authenticate', { name: user, password });
      credentials.setEtcd(user, answer.token);
      setPassword('');
      setError('');
      props.report(`Signed in to etcd as ${user}.`, 'info');
      props.onChange();
    } catch (err) {
      setError(messageOf(err));
    }
  };
  const signOut = (): void => {
    credentials.setEtcd('', '');
    props.report('Signed out of etcd.', 'info');
    props.onChange();
  };

  return (
    <section class="identity" aria-labelledby="identity-title">
      <h2 id="identity-title">Who am I</h2>
      <dl class="meta">
        <dt>Gateway client</dt>
        <dd>{credentials.gatewayToken() ? 'identified by the token below' : 'no token (anonymous, or by TLS client certificate)'}</dd>
        <dt>etcd user</dt>
        <dd>{signedIn || "none: the gateway's own etcd identity"}</dd>
      </dl>
      <form onSubmit={saveToken}>
        <h3>Gateway token</h3>
        <p class="hint">Sent as “Authorization: Bearer …” on every request; kept in this tab's session storage only.</p>
        <label for="gateway-token">Bearer token</label>
        <div class="inline">
          <input id="gateway-token" type="password" autocomplete="off" value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} />
          <button type="submit">Use token</button>
        </div>
      </form>
      <form onSubmit={(e) => void signIn(e)}>
        <h3>etcd user</h3>
        <p class="hint">For an etcd with authentication on: the token from /v3/auth/authenticate is sent in Grpc-Metadata-Token.</p>
        <label for="etcd-user">User name</label>
        <input id="etcd-user" autocomplete="username" value={user} onInput={(e) => setUser((e.target as HTMLInputElement).value)} />
        <label for="etcd-password">Password</label>
        <input id="etcd-password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} />
        {error && <p class="error" role="alert">{error}</p>}
        <div class="actions">
          <button type="submit">Sign in</button>
          {signedIn && (
            <button type="button" onClick={signOut}>
              Sign out
            </button>
          )}
        </div>
      </form>
    </section>
  );
}
