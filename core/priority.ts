/**
 * Definition priorities, as in NixOS lib/modules.nix: lower wins.
 * In YAML: `!mkDefault value` and `!mkForce value` (any node: scalar, list, map);
 * in TypeScript hosts: `mkDefault(value)` / `mkForce(value)`.
 */
export const PRIORITY = { optionDefault: 1500, mkDefault: 1000, plain: 100, mkForce: 50 } as const;

export class Prio<T = unknown> {
  constructor(readonly priority: number, readonly value: T) {}
}

export const mkDefault = <T>(value: T) => new Prio(PRIORITY.mkDefault, value);
export const mkForce = <T>(value: T) => new Prio(PRIORITY.mkForce, value);
export const mkOverride = <T>(priority: number, value: T) => new Prio(priority, value);

export const YAML_PRIORITY_TAGS: Record<string, number> = {
  "!mkDefault": PRIORITY.mkDefault,
  "!mkForce": PRIORITY.mkForce,
};
