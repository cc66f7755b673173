// The console shell: who is logged in, the role-aware navigation, and which page the address shows.
import type { MeResponse } from "@bulwark/api";
import { Component, lazy, type ReactNode, Suspense, useCallback, useEffect, useState } from "react";
import { errorMessage, REQUEST_TIMEOUT_MS, setCsrfToken, setUnauthorizedHandler } from "./api/client";
import { api } from "./api/endpoints";
import { LoginPage } from "./pages/Login";
import { type Capability, can } from "./roles";
import { href, type Route, useRoute } from "./router";
import { SessionContext } from "./session";
import { ErrorBox, Waiting } from "./ui/load";

// Each page is its own chunk, loaded when first shown: the first load carries only the shell,
// the login page and the API client (sizes in docs/console.md). A chunk gets the same deadline as
// a request, so "Loading the page…" ends in the page or an error, never spins on.
function withDeadline<T>(load: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("page load timed out")), REQUEST_TIMEOUT_MS);
  });
  return Promise.race([load, deadline]).finally(() => clearTimeout(timer));
}
const AdminPage = lazy(() => withDeadline(import("./pages/Admin")).then((m) => ({ default: m.AdminPage })));
const DashboardPage = lazy(() =>
  withDeadline(import("./pages/Dashboard")).then((m) => ({ default: m.DashboardPage })),
);
const JobsPage = lazy(() => withDeadline(import("./pages/Jobs")).then((m) => ({ default: m.JobsPage })));
const MachinePage = lazy(() =>
  withDeadline(import("./pages/Machine")).then((m) => ({ default: m.MachinePage })),
);
const MachinesPage = lazy(() =>
  withDeadline(import("./pages/Machines")).then((m) => ({ default: m.MachinesPage })),
);
const PoliciesPage = lazy(() =>
  withDeadline(import("./pages/Policies")).then((m) => ({ default: m.PoliciesPage })),
);
const PolicyEditPage = lazy(() =>
  withDeadline(import("./pages/PolicyEdit")).then((m) => ({ default: m.PolicyEditPage })),
);
const RestorePage = lazy(() =>
  withDeadline(import("./pages/Restore")).then((m) => ({ default: m.RestorePage })),
);

/**
 * A page that cannot be shown (its code did not load because the server was upgraded meanwhile or
 * the connection dropped, or it failed while drawing) shows the reason and a way out instead of a
 * blank page.
 */
class PageBoundary extends Component<{ children: ReactNode; page: string }, { failed?: string }> {
  override state: { failed?: string } = {};
  static getDerivedStateFromError(err: unknown): { failed: string } {
    return { failed: err instanceof Error ? err.message : String(err) };
  }
  override componentDidUpdate(prev: { page: string }): void {
    if (prev.page !== this.props.page && this.state.failed) this.setState({ failed: undefined });
  }
  override render(): ReactNode {
    if (this.state.failed === undefined) return this.props.children;
    return (
      <ErrorBox
        message={`This page could not be shown (${this.state.failed}). Try again reloads the console.`}
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
          <PageBoundary page={route.segments.join("/")}>
            <Suspense fallback={<Waiting what="the page" />}>
              <Page route={route} />
            </Suspense>
          </PageBoundary>
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
