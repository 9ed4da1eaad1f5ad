import { useState } from 'preact/hooks';
import { admin, type AdminAccount, type AdminApp, type AdminToken, type SessionInfo } from '../api';
import { Head, SdkSnippet } from '../components';
import { useApi } from '../use_api';

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function day(iso: string): string {
  return new Date(iso).toLocaleDateString();
}

// A token shown once, with a copy button.
function NewToken(props: { token: string; appId: string }) {
  const [copied, setCopied] = useState('');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.token);
      setCopied('Copied.');
    } catch {
      setCopied('Select the token and copy it by hand.');
    }
  };
  return (
    <div class="once" role="status" data-testid="new-token">
      <p>
        <strong>The API token of app {props.appId}</strong>: it is shown once; keep it now.
      </p>
      <p class="token-line">
        <code data-testid="new-token-value">{props.token}</code>{' '}
        <button type="button" onClick={copy} data-testid="copy-token">Copy</button> <span class="muted small">{copied}</span>
      </p>
      <p class="muted small">Scripts send it in the <code>Authorization</code> header of API v1 calls.</p>
    </div>
  );
}

// Admins only: apps and their tokens, the SDK snippet, and the accounts.
export function Settings(props: { session: SessionInfo; onChanged: () => void }) {
  const [version, setVersion] = useState(0);
  const [picked, setPicked] = useState('');
  const [shown, setShown] = useState<{ token: string; appId: string } | null>(null);
  const [error, setError] = useState('');
  const apps = useApi(`apps|${version}`, () => admin<AdminApp[]>('GET', 'apps'));
  const changed = () => {
    setVersion(version + 1);
    props.onChanged();
  };
  const createApp = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const name = String(new FormData(form).get('name') ?? '').trim();
    setError('');
    try {
      const made = await admin<{ appId: string; name: string; token: string }>('POST', 'apps', { name });
      setShown({ token: made.token, appId: made.appId });
      setPicked(made.appId);
      form.reset();
      changed();
    } catch (err) {
      setError(message(err));
    }
  };
  const list = apps.data ?? [];
  const app = list.find((a) => a.appId === picked) ?? list[0];
  return (
    <div class="page" data-testid="settings">
      <section class="panel" aria-labelledby="h-apps">
        <h2 id="h-apps">Apps</h2>
        {apps.error && <p class="error" role="alert">{apps.error}</p>}
        <div class="table-wrap">
          <table data-testid="apps-table">
            <Head columns={['name', 'app id', 'created', 'active tokens']} />
            <tbody>
              {list.map((a) => (
                <tr aria-selected={a.appId === app?.appId} data-testid={`app-row-${a.appId}`}>
                  <th scope="row">
                    <button type="button" class="link" onClick={() => setPicked(a.appId)}>{a.name}</button>
                  </th>
                  <td><code>{a.appId}</code></td>
                  <td>{day(a.createdAt)}</td>
                  <td data-testid={`app-tokens-${a.appId}`}>{a.activeTokens}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <form class="inline-form" onSubmit={createApp} aria-label="New app">
          <label>
            New app <input name="name" required maxLength={200} placeholder="Name" data-testid="new-app-name" />
          </label>
          <button type="submit" class="primary" data-testid="create-app">Create app</button>
        </form>
        {error && <p class="error" role="alert" data-testid="settings-error">{error}</p>}
        {shown && <NewToken token={shown.token} appId={shown.appId} />}
      </section>
      {app && <Tokens key={`${app.appId}|${version}`} app={app} onChanged={changed} onNew={setShown} />}
      {app && (
        <section class="panel" aria-labelledby="h-sdk">
          <h2 id="h-sdk">SDK snippet for {app.name}</h2>
          <SdkSnippet appId={app.appId} />
        </section>
      )}
      <Accounts session={props.session} apps={list} />
    </div>
  );
}

function Tokens(props: { app: AdminApp; onChanged: () => void; onNew: (t: { token: string; appId: string }) => void }) {
  const { app } = props;
  const [error, setError] = useState('');
  const tokens = useApi(`tokens|${app.appId}`, () => admin<AdminToken[]>('GET', `apps/${encodeURIComponent(app.appId)}/tokens`));
  const create = async () => {
    setError('');
    try {
      const made = await admin<{ token: string; appId: string }>('POST', `apps/${encodeURIComponent(app.appId)}/tokens`);
      props.onNew({ token: made.token, appId: made.appId });
      props.onChanged();
    } catch (e) {
      setError(message(e));
    }
  };
  const revoke = async (t: AdminToken) => {
    if (!confirm(`Revoke token ${t.prefix}…? Scripts using it are refused from now on.`)) return;
    setError('');
    try {
      await admin('DELETE', `apps/${encodeURIComponent(app.appId)}/tokens/${encodeURIComponent(t.prefix)}`);
      props.onChanged();
    } catch (e) {
      setError(message(e));
    }
  };
  return (
    <section class="panel" aria-labelledby="h-tokens" data-testid="tokens">
      <header class="panel-head">
        <h2 id="h-tokens">API tokens of {app.name}</h2>
        <button type="button" onClick={create} data-testid="create-token">New token</button>
      </header>
      {error && <p class="error" role="alert">{error}</p>}
      {tokens.error && <p class="error" role="alert">{tokens.error}</p>}
      <div class="table-wrap">
        <table data-testid="tokens-table">
          <Head columns={['token', 'created', 'state', '']} />
          <tbody>
            {(tokens.data ?? []).map((t) => (
              <tr data-testid={`token-${t.prefix}`}>
                <th scope="row"><code>{t.prefix}…</code></th>
                <td>{day(t.createdAt)}</td>
                <td>{t.revokedAt ? `revoked ${day(t.revokedAt)}` : 'active'}</td>
                <td>
                  {!t.revokedAt && (
                    <button type="button" class="danger" onClick={() => revoke(t)} data-testid={`revoke-${t.prefix}`}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function AppChoice(props: { apps: AdminApp[]; chosen: string[]; onChange: (apps: string[]) => void; label: string }) {
  return (
    <fieldset class="app-choice">
      <legend class="small muted">{props.label}</legend>
      {props.apps.map((a) => (
        <label>
          <input type="checkbox" checked={props.chosen.includes(a.appId)} value={a.appId}
            onChange={(e) => {
              const on = (e.currentTarget as HTMLInputElement).checked;
              props.onChange(on ? [...props.chosen, a.appId] : props.chosen.filter((x) => x !== a.appId));
            }} />{' '}
          {a.name}
        </label>
      ))}
    </fieldset>
  );
}

function AccountRow(props: { account: AdminAccount; me: boolean; apps: AdminApp[]; onChanged: () => void; onError: (m: string) => void }) {
  const { account } = props;
  const [role, setRole] = useState(account.role);
  const [chosen, setChosen] = useState(account.apps);
  const dirty = role !== account.role || chosen.join(',') !== account.apps.join(',');
  const names = (ids: string[]) => ids.map((id) => props.apps.find((a) => a.appId === id)?.name ?? id).join(', ');
  const save = async () => {
    try {
      await admin('PATCH', `accounts/${encodeURIComponent(account.email)}`, { role, apps: role === 'admin' ? [] : chosen });
      props.onChanged();
    } catch (e) {
      props.onError(message(e));
    }
  };
  const remove = async () => {
    if (!confirm(`Remove the account ${account.email}? Its sessions end at once.`)) return;
    try {
      await admin('DELETE', `accounts/${encodeURIComponent(account.email)}`);
      props.onChanged();
    } catch (e) {
      props.onError(message(e));
    }
  };
  return (
    <tr data-testid={`account-${account.email}`}>
      <th scope="row">{account.email}{props.me && <span class="muted small"> (you)</span>}</th>
      <td>
        {props.me ? account.role : (
          <select value={role} aria-label={`Role of ${account.email}`} data-testid={`role-${account.email}`}
            onChange={(e) => setRole((e.currentTarget as HTMLSelectElement).value as AdminAccount['role'])}>
            <option value="admin">admin</option>
            <option value="viewer">viewer</option>
          </select>
        )}
      </td>
      <td class="wrap">
        {role === 'admin' ? <span class="muted">every app</span> : props.me ? names(chosen) : (
          <AppChoice apps={props.apps} chosen={chosen} onChange={setChosen} label={`Apps of ${account.email}`} />
        )}
      </td>
      <td>{day(account.createdAt)}</td>
      <td>
        {!props.me && (
          <>
            <button type="button" disabled={!dirty} onClick={save} data-testid={`save-${account.email}`}>Save</button>{' '}
            <button type="button" class="danger" onClick={remove} data-testid={`remove-${account.email}`}>Remove</button>
          </>
        )}
      </td>
    </tr>
  );
}

function Accounts(props: { session: SessionInfo; apps: AdminApp[] }) {
  const [version, setVersion] = useState(0);
  const [error, setError] = useState('');
  const [role, setRole] = useState<AdminAccount['role']>('viewer');
  const [chosen, setChosen] = useState<string[]>([]);
  const accounts = useApi(`accounts|${version}`, () => admin<AdminAccount[]>('GET', 'accounts'));
  const changed = () => {
    setError('');
    setVersion(version + 1);
  };
  const add = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    try {
      await admin('POST', 'accounts', {
        email: String(data.get('email') ?? ''),
        password: String(data.get('password') ?? ''),
        role,
        apps: role === 'admin' ? [] : chosen,
      });
      form.reset();
      setChosen([]);
      changed();
    } catch (err) {
      setError(message(err));
    }
  };
  return (
    <section class="panel" aria-labelledby="h-accounts" data-testid="accounts">
      <h2 id="h-accounts">Accounts</h2>
      {accounts.error && <p class="error" role="alert">{accounts.error}</p>}
      {error && <p class="error" role="alert" data-testid="accounts-error">{error}</p>}
      <div class="table-wrap">
        <table data-testid="accounts-table">
          <Head columns={['email', 'role', 'apps', 'created', '']} />
          <tbody>
            {(accounts.data ?? []).map((a) => (
              <AccountRow key={`${a.email}|${a.role}|${a.apps.join(',')}`} account={a} me={a.email === props.session.email}
                apps={props.apps} onChanged={changed} onError={setError} />
            ))}
          </tbody>
        </table>
      </div>
      <form class="inline-form" onSubmit={add} aria-label="New account">
        <label>
          Email <input name="email" type="email" required autocomplete="off" data-testid="new-account-email" />
        </label>
        <label>
          Password <input name="password" type="password" required minLength={8} autocomplete="new-password" data-testid="new-account-password" />
        </label>
        <label>
          Role{' '}
          <select value={role} data-testid="new-account-role" onChange={(e) => setRole((e.currentTarget as HTMLSelectElement).value as AdminAccount['role'])}>
            <option value="viewer">viewer</option>
            <option value="admin">admin</option>
          </select>
        </label>
        {role === 'viewer' && <AppChoice apps={props.apps} chosen={chosen} onChange={setChosen} label="Apps the viewer sees" />}
        <button type="submit" class="primary" data-testid="add-account">Add account</button>
      </form>
      <p class="muted small">
        An admin sees every app and may change things; a viewer sees the apps chosen and changes nothing. Passwords are
        changed on the server: <code>nucleon user passwd EMAIL</code>.
      </p>
    </section>
  );
}
