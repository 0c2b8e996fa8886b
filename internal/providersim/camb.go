package providersim

// cambRoutes registers the simulated camb API. (Filled in by the providers issue.)
func (s *Server) cambRoutes() {}
