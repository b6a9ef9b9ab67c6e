import { describe, expect, it } from "vitest";
import { initialLang, missing, tr } from "./i18n";

describe("i18n", () => {
  it("has every string in Spanish and English", () => {
    expect(missing()).toEqual([]);
    expect(tr("es", "send")).toBe("Enviar");
    expect(tr("en", "send")).toBe("Send");
  });
  it("starts in the saved language, else the browser's", () => {
    expect(initialLang("en", "es-ES")).toBe("en");
    expect(initialLang(null, "es-ES")).toBe("es");
    expect(initialLang("fr", "de-DE")).toBe("en");
  });
});
