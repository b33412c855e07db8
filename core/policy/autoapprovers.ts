/**
 * Route approval as data: the hosts that advertise routes or an exit node say
 * so in their own files, so the autoApprovers that let headscale approve them
 * follow from the hosts (by their tags, or their user when untagged), merged
 * with whatever the policy author wrote by hand. headscale 0.25-0.26 had
 * approval bugs (juanfont/headscale#2485, #2547): approval is still verified
 * after a node joins, never assumed from this.
 */
import type { AutoApprovers } from "./schema.ts";
import { EXIT_ROUTES } from "../../contract/constants.ts";

export interface AdvertisingHost {
  name: string;
  tags: string[];
  /** The user the node logs in as; used only when it has no tags. */
  user?: string;
  routes: string[];
  exitNode: boolean;
}

export function generateAutoApprovers(hosts: AdvertisingHost[], handWritten?: Partial<AutoApprovers>): AutoApprovers {
  const routes = new Map<string, Set<string>>();
  const exit = new Set<string>(handWritten?.exitNode ?? []);
  for (const [cidr, owners] of Object.entries(handWritten?.routes ?? {})) routes.set(cidr, new Set(owners));
  // Stryker disable next-line MethodExpression,ArrowFunction: the hosts' order does not reach the result, whose keys and owners are sorted below
  for (const h of [...hosts].sort((a, b) => a.name.localeCompare(b.name))) {
    // A tagged node is owned by its tags; its user no longer identifies it (headscale 0.27+).
    const owners = h.tags.length > 0 ? h.tags : h.user ? [`${h.user.replace(/@$/, "")}@`] : [];
    if (owners.length === 0) continue;
    for (const r of h.routes) {
      if (EXIT_ROUTES.includes(r)) {
        owners.forEach((o) => exit.add(o));
        continue;
      }
      const set = routes.get(r) ?? new Set<string>();
      owners.forEach((o) => set.add(o));
      routes.set(r, set);
    }
    if (h.exitNode) owners.forEach((o) => exit.add(o));
  }
  return {
    routes: Object.fromEntries([...routes].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, [...v].sort()])),
    exitNode: [...exit].sort(),
  };
}
