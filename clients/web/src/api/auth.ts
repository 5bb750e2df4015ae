// The bearer token the browser sends (when the server requires JWT), kept in localStorage so
// a reload keeps the operator signed in, and whether a call was just refused for want of one.

import { useSyncExternalStore } from "react";

const KEY = "sluice.token";

type Listener = () => void;

class AuthState {
  private listeners = new Set<Listener>();
  private loginWanted = false;
  private reason = "";

  get token(): string {
    try {
      return window.localStorage.getItem(KEY) ?? "";
    } catch {
      return ""; // storage disabled: no token
    }
  }

  setToken(token: string): void {
    const trimmed = token.trim().replace(/^Bearer\s+/i, "");
    if (trimmed) {
      window.localStorage.setItem(KEY, trimmed);
    } else {
      window.localStorage.removeItem(KEY);
    }
    this.loginWanted = false;
    this.reason = "";
    this.notify();
  }

  /** A call came back UNAUTHENTICATED: ask for a token, saying why. */
  requireLogin(reason: string): void {
    this.loginWanted = true;
    this.reason = reason;
    this.notify();
  }

  dismiss(): void {
    this.loginWanted = false;
    this.notify();
  }

  snapshot = (): string => `${this.loginWanted ? "1" : "0"}|${this.reason}|${this.token}`;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  get state(): { loginWanted: boolean; reason: string; token: string } {
    return { loginWanted: this.loginWanted, reason: this.reason, token: this.token };
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

export const auth = new AuthState();

/** Re-renders when the token or the login prompt changes. */
export function useAuth(): { loginWanted: boolean; reason: string; token: string } {
  useSyncExternalStore(auth.subscribe, auth.snapshot);
  return auth.state;
}
