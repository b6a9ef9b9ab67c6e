// How the chat's model picker groups what /v1/models lists.
import type { Model } from "./api";

/**
 * The picker's groups: the tenant's aliases first (`…@champion`), then
 * its versions, then the base model under all its names.
 */
export function groupModels(models: Model[]): ["aliases" | "versions" | "baseModel", Model[]][] {
  const aliases = models.filter((m) => m.id.includes("@"));
  const versions = models.filter((m) => !m.id.includes("@") && m.status !== undefined);
  const base = models.filter((m) => !m.id.includes("@") && m.status === undefined);
  const groups: ["aliases" | "versions" | "baseModel", Model[]][] = [
    ["aliases", aliases],
    ["versions", versions],
    ["baseModel", base],
  ];
  return groups.filter(([, list]) => list.length > 0);
}
