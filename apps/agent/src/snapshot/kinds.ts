/** The snapshot providers; kept apart so the journal and the provider interface need not import each other. */
export type ProviderKind = "device" | "file" | "lvm" | "lvm-thin" | "vss";
