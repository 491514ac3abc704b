/** Klym's version. The release workflow rewrites this file from the tag before compiling. */
export const VERSION = "0.1.0";
