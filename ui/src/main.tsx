// The console's frame: the views, the message line every view reports to, and who is signed in.

import { render } from 'preact';
import { useState } from 'preact/hooks';
import { credentials } from './api';
import { ClusterView } from './cluster';
import { IdentityView } from './identity';
import { KeysView } from './keys';
import { LeasesView } from './leases';
import { messageOf, type Report } from './widgets';

const VIEWS = { keys: 'Keys', leases: 'Leases', cluster: 'Cluster', identity: 'Who am I' } as const;
type View = keyof typeof VIEWS;

function App() {
  const [view, setViewState] = useState<View>('keys');
  const [message, setMessage] = useState<{ text: string; kind: 'error' | 'info'; n: number } | undefined>();
  // Bumped when the identity changes: every view reads again with the new credentials.
  const [identity, setIdentity] = useState(0);

  const setView = (v: View): void => {
    setViewState(v);
    setMessage(undefined);
  };
  const report: Report = (what, kind = 'error') => {
    // Nothing to say: what was said before (a "Saved …") no longer holds.
    if (what === undefined) return setMessage(undefined);
    setMessage((m) => ({ text: kind === 'info' && typeof what === 'string' ? what : messageOf(what), kind, n: (m?.n ?? 0) + 1 }));
  };

  const who = [credentials.gatewayToken() ? 'gateway token set' : 'no gateway token', credentials.etcdUser() ? `etcd user ${credentials.etcdUser()}` : ''].filter(Boolean).join(', ');
  return (
    <>
      <header>
        <h1>etcd console</h1>
        <nav aria-label="Views">
          <ul>
            {(Object.keys(VIEWS) as View[]).map((v) => (
              <li key={v}>
                <button type="button" aria-current={view === v ? 'page' : undefined} onClick={() => setView(v)}>
                  {VIEWS[v]}
                </button>
              </li>
            ))}
          </ul>
        </nav>
        <p class="who">{who}</p>
      </header>
      <div class="messages">
        <div role="alert" class={message?.kind === 'error' ? 'message error' : 'hidden'}>
          {message?.kind === 'error' && (
            <>
              {message.text}{' '}
              <button type="button" onClick={() => setMessage(undefined)}>
                Dismiss
              </button>
            </>
          )}
        </div>
        <div role="status" class={message?.kind === 'info' ? 'message info' : 'hidden'}>
          {message?.kind === 'info' && message.text}
        </div>
      </div>
      <main key={identity}>
        {view === 'keys' && <KeysView report={report} />}
        {view === 'leases' && <LeasesView report={report} />}
        {view === 'cluster' && <ClusterView report={report} />}
        {view === 'identity' && <IdentityView report={report} onChange={() => setIdentity((n) => n + 1)} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
