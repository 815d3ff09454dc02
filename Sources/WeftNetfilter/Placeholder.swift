import CNetfilter
