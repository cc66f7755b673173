// The console shell: who is logged in, the role-aware navigation, and which page the address shows.
import type { MeResponse } from "@bulwark/api";
import { Component, lazy, type ReactNode, Suspense, useCallback, useEffect, useState } from "react";
import { errorMessage, setCsrfToken, setUnauthorizedHandler } from "./api/client";
import { api } from "./api/endpoints";
import { LoginPage } from "./pages/Login";
import { type Capability, can } from "./roles";
import { href, type Route, useRoute } from "./router";
import { SessionContext } from "./session";
import { ErrorBox, Waiting } from "./ui/load";

// Each page is its own chunk, loaded when first shown: the first load carries only the shell,
// the login page and the API client (sizes in docs/console.md).
const AdminPage = lazy(() => import("./pages/Admin").then((m) => ({ default: m.AdminPage })));
const DashboardPage = lazy(() => import("./pages/Dashboard").then((m) => ({ default: m.DashboardPage })));
const JobsPage = lazy(() => import("./pages/Jobs").then((m) => ({ default: m.JobsPage })));
const MachinePage = lazy(() => import("./pages/Machine").then((m) => ({ default: m.MachinePage })));
const MachinesPage = lazy(() => import("./pages/Machines").then((m) => ({ default: m.MachinesPage })));
const PoliciesPage = lazy(() => import("./pages/Policies").then((m) => ({ default: m.PoliciesPage })));
const PolicyEditPage = lazy(() => import("./pages/PolicyEdit").then((m) => ({ default: m.PolicyEditPage })));
const RestorePage = lazy(() => import("./pages/Restore").then((m) => ({ default: m.RestorePage })));

/**
 * A page's code that fails to load (the server was upgraded and the old chunk is gone, or the
 * network dropped) shows an error with a way out instead of a blank page.
 */
class PageLoadBoundary extends Component<{ children: ReactNode; page: string }, { failed: boolean }> {
  override state = { failed: false };
  static getDerivedStateFromError(): { failed: boolean } {
    return { failed: true };
  }
  override componentDidUpdate(prev: { page: string }): void {
    if (prev.page !== this.props.page && this.state.failed) this.setState({ failed: false });
  }
  override render(): ReactNode {
    if (!this.state.failed) return this.props.children;
    return (
      <ErrorBox
        message="This page could not be shown: its code did not load (the server may have been upgraded, or the connection dropped)."
        onRetry={() => window.location.reload()}
      />
    );
  }
}

type Session =
  | { state: "checking" }
  | { state: "anonymous"; reason?: string }
  | { state: "in"; me: MeResponse };

interface NavItem {
  path: string;
  label: string;
  capability?: Capability;
}

const NAV: NavItem[] = [
  { path: "/", label: "Dashboard" },
  { path: "/machines", label: "Machines" },
  { path: "/restore", label: "Restore", capability: "restore" },
  { path: "/policies", label: "Policies" },
  { path: "/jobs", label: "Jobs" },
  { path: "/admin", label: "Admin", capability: "viewAdmin" },
];

function currentSection(route: Route): string {
  return `/${route.segments[0] ?? ""}`;
}

export function App() {
  const route = useRoute();
  const [session, setSession] = useState<Session>({ state: "checking" });
  const [checkError, setCheckError] = useState<string | undefined>();

  const check = useCallback(() => {
    setCheckError(undefined);
    api.me().then(
      (me) => setSession({ state: "in", me }),
      (err: unknown) => {
        if (err instanceof Error && "status" in err && err.status === 401) setSession({ state: "anonymous" });
        else setCheckError(errorMessage(err));
      },
    );
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() =>
      setSession({ state: "anonymous", reason: "Your session ended. Please log in again." }),
    );
    check();
  }, [check]);

  if (checkError) {
    return (
      <main id="main">
        <h1>Bulwark</h1>
        <ErrorBox message={`Cannot reach the server: ${checkError}`} onRetry={check} />
      </main>
    );
  }
  if (session.state === "checking") {
    return (
      <main id="main">
        <Waiting what="your session" />
      </main>
    );
  }
  if (session.state === "anonymous") {
    return (
      <LoginPage
        notice={session.reason}
        onLoggedIn={(res) => {
          setCsrfToken(res.csrfToken);
          check();
        }}
      />
    );
  }
  const me = session.me;
  const section = currentSection(route);
  const item = NAV.find((n) => n.path === section);
  const allowed = !item?.capability || can(me.role, item.capability);

  return (
    <SessionContext.Provider value={me}>
      <button type="button" className="skip-link" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header className="topbar">
        <span className="brand">Bulwark</span>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => !n.capability || can(me.role, n.capability)).map((n) => (
              <li key={n.path}>
                <a href={href(n.path)} aria-current={n.path === section ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="whoami">
          <span>
            {me.user.displayName} <span className="role">({me.role.toLowerCase()})</span>
          </span>
          <button
            type="button"
            className="link-button"
            onClick={() => {
              void api.logout().finally(() => {
                setCsrfToken(undefined);
                setSession({ state: "anonymous", reason: "You are logged out." });
              });
            }}
          >
            Log out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {allowed ? (
          <PageLoadBoundary page={route.segments.join("/")}>
            <Suspense fallback={<Waiting what="the page" />}>
              <Page route={route} />
            </Suspense>
          </PageLoadBoundary>
        ) : (
          <NotAllowed />
        )}
      </main>
    </SessionContext.Provider>
  );
}

function NotAllowed() {
  return (
    <section>
      <h1>Not available</h1>
      <p>Your role does not give access to this page.</p>
      <p>
        <a href={href("/")}>Back to the dashboard</a>
      </p>
    </section>
  );
}

function Page({ route }: { route: Route }) {
  const [first, second] = route.segments;
  switch (first) {
    case undefined:
      return <DashboardPage />;
    case "machines":
      return second ? <MachinePage id={second} /> : <MachinesPage />;
    case "restore":
      return <RestorePage query={route.query} />;
    case "policies":
      return second ? <PolicyEditPage id={second === "new" ? undefined : second} /> : <PoliciesPage />;
    case "jobs":
      return <JobsPage selected={second} />;
    case "admin":
      return <AdminPage tab={second} />;
    default:
      return (
        <section>
          <h1>Page not found</h1>
          <p>
            <a href={href("/")}>Back to the dashboard</a>
          </p>
        </section>
      );
  }
}
