public enum ConfigLoaderPlaceholder {}
