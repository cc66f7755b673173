import type { LoginResponse } from "@bulwark/api";
import { useState } from "react";
import { api } from "../api/endpoints";
import { useAction } from "../ui/load";

export function LoginPage({
  notice,
  onLoggedIn,
}: {
  notice?: string;
  onLoggedIn: (res: LoginResponse) => void;
}) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  return (
    <main id="main" className="login">
      <h1>Bulwark</h1>
      <p className="subtitle">Image backup for your fleet</p>
      <form
        aria-labelledby="login-heading"
        onSubmit={(e) => {
          e.preventDefault();
          void run(() => api.login(email, password)).then((res) => res && onLoggedIn(res));
        }}
      >
        <h2 id="login-heading">Log in</h2>
        {notice && !error && <p role="status">{notice}</p>}
        <label htmlFor="login-email">E-mail</label>
        <input
          id="login-email"
          type="email"
          autoComplete="username"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <label htmlFor="login-password">Password</label>
        <input
          id="login-password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {error && (
          <p className="problem" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}
