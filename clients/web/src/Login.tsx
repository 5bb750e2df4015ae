// The token prompt: shown when a call comes back UNAUTHENTICATED (the server requires JWT)
// or when the operator asks. The token is kept in localStorage and sent with every call.

import { useState, type FormEvent } from "react";

import { auth, useAuth } from "./api/auth";

export function Login({ open, onClose }: { open: boolean; onClose: () => void }) {
  const state = useAuth();
  const [token, setToken] = useState("");
  if (!open && !state.loginWanted) return null;
  const save = (event: FormEvent) => {
    event.preventDefault();
    auth.setToken(token);
    setToken("");
    onClose();
  };
  const close = () => {
    auth.dismiss();
    onClose();
  };
  return (
    <div className="dialog-backdrop">
      <form
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby="login-title"
        data-testid="login"
        onSubmit={save}
      >
        <h2 id="login-title">Sign in</h2>
        {state.loginWanted && (
          <p className="muted" data-testid="login-reason">
            The server requires a token{state.reason ? `: ${state.reason}` : ""}.
          </p>
        )}
        <label>
          Bearer token (a JWT, e.g. from <code>sluice token</code>)
          <input
            type="password"
            autoComplete="off"
            autoFocus
            value={token}
            onChange={(e) => setToken(e.target.value)}
            data-testid="token-input"
          />
        </label>
        <div className="buttons">
          <button type="submit" className="primary" data-testid="token-save">
            Save
          </button>
          {state.token && (
            <button type="button" onClick={() => (auth.setToken(""), onClose())}>
              Forget the stored token
            </button>
          )}
          <button type="button" onClick={close}>
            Close
          </button>
        </div>
      </form>
    </div>
  );
}
