package providersim

// vimmerseRoutes registers the simulated vimmerse API. (Filled in by the providers issue.)
func (s *Server) vimmerseRoutes() {}
