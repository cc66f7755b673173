// The logged-in user, for every page (App provides it once the session is known).
import type { MeResponse } from "@bulwark/api";
import { createContext, useContext } from "react";
import { type Capability, can } from "./roles";

export const SessionContext = createContext<MeResponse | undefined>(undefined);

/** The logged-in user (pages render only inside a session). */
export function useMe(): MeResponse {
  const me = useContext(SessionContext);
  if (!me) throw new Error("useMe outside a session");
  return me;
}

export function useCan(capability: Capability): boolean {
  return can(useMe().role, capability);
}
