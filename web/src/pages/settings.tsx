import type { SessionInfo } from '../api';
import { SdkSnippet } from '../components';

// Admins only: the apps and how to point an SDK at each.
export function Settings(props: { session: SessionInfo }) {
  return (
    <div class="page" data-testid="settings">
      <section class="panel" aria-labelledby="h-apps">
        <h2 id="h-apps">Apps</h2>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">name</th>
                <th scope="col">app id</th>
              </tr>
            </thead>
            <tbody>
              {props.session.apps.map((a) => (
                <tr>
                  <th scope="row">{a.name}</th>
                  <td>
                    <code>{a.appId}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <p class="muted small">
          Apps and API tokens are made on the server: <code>nucleon app create NAME</code>, <code>nucleon token create APP_ID</code>,{' '}
          <code>nucleon token revoke PREFIX</code>.
        </p>
      </section>
      {props.session.apps[0] && (
        <section class="panel" aria-labelledby="h-sdk">
          <h2 id="h-sdk">SDK snippet</h2>
          <SdkSnippet appId={props.session.apps[0].appId} />
        </section>
      )}
      <section class="panel" aria-labelledby="h-accounts">
        <h2 id="h-accounts">Accounts</h2>
        <p>
          Accounts are managed on the server: <code>nucleon user add EMAIL --role admin|viewer --apps APP,APP</code>,{' '}
          <code>nucleon user list</code>, <code>nucleon user passwd EMAIL</code>, <code>nucleon user remove EMAIL</code>.
        </p>
      </section>
    </div>
  );
}
