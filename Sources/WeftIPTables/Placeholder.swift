public enum IPTablesPlaceholder {}
