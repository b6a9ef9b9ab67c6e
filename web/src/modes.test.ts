import { describe, expect, it } from "vitest";
import { slug } from "./views/ModesEditor";

describe("slug", () => {
  it("makes a valid, unused mode id from a name", () => {
    expect(slug("Acta del Pleno", [])).toBe("acta-del-pleno");
    expect(slug("Técnico (completo)", [])).toBe("tecnico-completo");
    expect(slug("Técnico", ["tecnico"])).toBe("tecnico-2");
    expect(slug("¡¡!!", [])).toBe("mode");
    expect(slug("x".repeat(80), []).length).toBeLessThanOrEqual(40);
  });
});
