/** Klym's version: the one place it is written (MCP server info, `klym --version`, the banner). */
export const VERSION = "0.2.0";
