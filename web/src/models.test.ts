import { describe, expect, it } from "vitest";
import { groupModels } from "./models";

describe("groupModels", () => {
  it("puts aliases first, then versions, then the base model's names, and drops empty groups", () => {
    const m = (id: string, status?: string) => ({ id, owned_by: "t", parent: null, status });
    const groups = groupModels([m("default"), m("v1", "promoted"), m("default@champion"), m("base")]);
    expect(groups.map(([g, l]) => [g, l.map((x) => x.id)])).toEqual([
      ["aliases", ["default@champion"]],
      ["versions", ["v1"]],
      ["baseModel", ["default", "base"]],
    ]);
    expect(groupModels([m("base")]).map(([g]) => g)).toEqual(["baseModel"]);
  });
});
