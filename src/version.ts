/** Klym's version, written in this one place. The release workflow rewrites it from the tag. */
export const VERSION = "0.2.0";
